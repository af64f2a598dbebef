"""The engine on the two real pretrained models (slow; selected in CI).

all-MiniLM-L6-v2 on STS-B dev and SmolLM2-135M on a WikiText-2 test prefix, compressed with
`id` and `svd` (and `magnitude` for comparison): the MAC target is met and the quality floors of
the engine issue hold. The bars' full protocols are measured by bench/ (RESULTS.md).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from workers.compression.engine import CompressionSpec, compress
from workers.data import DataSource, build_calibration
from workers.evaluation import run_task
from workers.models import MINILM_ID, SMOLLM2_ID, load_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def minilm(bundled: list[str], data_dir: Path) -> dict[str, Any]:
    model, tok = load_model(MINILM_ID)
    cal = build_calibration(tok, DataSource(path=str(data_dir / "stsb/train.tsv"), text_column="sentence1"),
                            num_samples=256, max_seq_length=128, seed=0)
    dev = DataSource(path=str(data_dir / "stsb/dev.tsv"))
    dense = run_task("sts", model, tok, data=dev).metrics["spearman"]
    return {"model": model, "tok": tok, "cal": cal, "dev": dev, "dense": dense}


def _minilm_spearman(ctx: dict[str, Any], method: str, target: float, **params: Any) -> float:
    model = copy.deepcopy(ctx["model"])
    report = compress(model, ctx["cal"].batches, CompressionSpec(method, target, 128, params))
    assert target - 0.01 <= report["macs"]["mac_ratio"] <= target
    return run_task("sts", model, ctx["tok"], data=ctx["dev"]).metrics["spearman"]


@pytest.mark.parametrize(("target", "floor"), [(0.7, 0.858), (0.5, 0.830)])
def test_minilm_id_keeps_sts_b_and_beats_the_baselines(
    minilm: dict[str, Any], target: float, floor: float
) -> None:
    assert minilm["dense"] == pytest.approx(0.867, abs=0.002)
    id_score = _minilm_spearman(minilm, "id", target)
    assert id_score >= floor
    assert id_score > _minilm_spearman(minilm, "magnitude", target)
    assert id_score > _minilm_spearman(minilm, "svd", target, activation_aware=False)


def test_minilm_activation_aware_svd_meets_the_target_and_beats_plain_svd(minilm: dict[str, Any]) -> None:
    aware = _minilm_spearman(minilm, "svd", 0.7)
    assert aware > _minilm_spearman(minilm, "svd", 0.7, activation_aware=False)


@pytest.fixture(scope="module")
def smollm2(bundled: list[str], data_dir: Path) -> dict[str, Any]:
    model, tok = load_model(SMOLLM2_ID)
    cal = build_calibration(tok, DataSource(path=str(data_dir / "wikitext-2/valid.txt")),
                            num_samples=32, max_seq_length=256, seed=0, mode="chunk")
    test = DataSource(path=str(data_dir / "wikitext-2/test.txt"))
    return {"model": model, "tok": tok, "cal": cal, "test": test}


def _smollm2_ppl(ctx: dict[str, Any], method: str, target: float, **params: Any) -> float:
    model = copy.deepcopy(ctx["model"])
    report = compress(model, ctx["cal"].batches, CompressionSpec(method, target, 256, params))
    assert target - 0.01 <= report["macs"]["mac_ratio"] <= target
    options = {"seq_len": 512, "max_tokens": 4096}
    return run_task("perplexity", model, ctx["tok"], data=ctx["test"], options=options).metrics["perplexity"]


def test_smollm2_id_at_0_7_beats_svd_and_magnitude(smollm2: dict[str, Any]) -> None:
    id_ppl = _smollm2_ppl(smollm2, "id", 0.7)
    # 4,096-token prefix (dense 27.6 here, 24.9 on 16,384 tokens): the 16k-token bar of 40 is
    # measured by bench/; this prefix must stay below 48.
    assert id_ppl <= 48
    assert id_ppl < _smollm2_ppl(smollm2, "magnitude", 0.7)
    # uniform ranks: no planning pass, which halves the SVD work of this test
    assert id_ppl < _smollm2_ppl(smollm2, "svd", 0.7, allocation="uniform")


@pytest.mark.parametrize("method", ["block_lowrank", "monarch"])
def test_minilm_structured_factorisations_fit_to_calibration_beat_their_weight_space_fit(
    minilm: dict[str, Any], method: str
) -> None:
    """At MAC 0.5 on the real encoder: the activation-aware fit keeps more STS-B than the plain one
    (bench: 0.845 against 0.812 for block low rank, 0.844 against 0.806 for Monarch)."""
    aware = _minilm_spearman(minilm, method, 0.5)
    plain = _minilm_spearman(minilm, method, 0.5, activation_aware=False)
    assert aware > plain + 0.01
    assert aware >= 0.82

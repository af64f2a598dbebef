"""Synthetic result JSONs in the shapes the suites write, for testing the report without running models.

Every file goes through the real `bench.common.write_result`, so provenance keys are the real ones.
Numbers are chosen so that each bar's verdict is known: `passing=True` passes every bar.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.common import write_result
from bench.settings import MODELS

TARGETS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5)
# metric at MAC 1.0 minus this slope times (1 - target)
SLOPES = {"id": 0.02, "svd-aa": 0.04, "svd": 0.3, "magnitude": 0.5}


def _point(method: str, target: float, metric: str, value: float, seconds: float = 3.0) -> dict[str, Any]:
    return {
        "method": method,
        "engine_method": method.split("-")[0],
        "params": {"staged": True},
        "target": target,
        "mac_ratio": target - 0.001,
        "mac_ratio_model": target - 0.001,
        "params_before": 22_713_216,
        "params_after": int(22_713_216 * target),
        "seconds": seconds,
        "timings": {
            "capture": 0.1,
            "planning": seconds / 2,
            "compression": seconds / 2 - 0.1,
            "total": seconds,
        },
        "metrics": {metric: value},
        "eval_seconds": 2.0,
    }


def _model(key: str) -> dict[str, Any]:
    bench = MODELS[key]
    return {
        "key": key,
        "label": bench.label,
        "model_id": bench.model_id,
        "task": bench.task,
        "metric": bench.metric,
        "eval_file": bench.eval_file,
        "extra_metrics": list(bench.extra_metrics),
    }


def quality_minilm(folder: Path, *, passing: bool = True, quick: bool = False) -> Path:
    dense = 0.867
    points = [
        _point(m, t, "spearman", dense - s * (1 - t) * (1 if passing else 5))
        for m, s in SLOPES.items()
        for t in TARGETS
    ]
    points.append({"method": "svd", "target": 0.4, "error": "BudgetInfeasible: synthetic"})
    ablations = [{"ablation": "reference", "variant": "default", "samples": 256, **points[3]}]
    ablations += [
        {
            "ablation": "samples",
            "variant": f"{n} samples",
            "samples": n,
            **_point("id", 0.7, "spearman", 0.85 + n / 1e5),
        }
        for n in (32, 1024)
    ]
    payload = {
        "suite": "quality",
        "quick": quick,
        "model": _model("minilm"),
        "settings": {"targets": list(TARGETS), "reference_seq_len": 128, "device": "cpu"},
        "dense": {"metrics": {"spearman": dense}, "eval_seconds": 5.0},
        "calibration": {
            "source": "stsb/train.tsv:sentence1",
            "mode": "sentences",
            "num_samples": 256,
            "num_tokens": 3000,
            "max_seq_length": 128,
            "seed": 0,
            "fingerprint": "ab" * 32,
        },
        "points": points,
        "ablations": ablations,
    }
    return write_result(
        "quality_minilm", payload, seeds={"calibration": 0}, protocol={"task": "sts"}, results_dir=folder
    )


def quality_smollm2(folder: Path, *, passing: bool = True) -> Path:
    dense = 24.9
    points = [
        {
            **_point(m, t, "perplexity", dense * (1 + s * (1 - t) * (10 if passing else 1000))),
            "metrics": {
                "perplexity": dense * (1 + s * (1 - t) * (10 if passing else 1000)),
                "token_accuracy": 0.4,
            },
        }
        for m, s in SLOPES.items()
        for t in TARGETS
    ]
    payload = {
        "suite": "quality",
        "quick": False,
        "model": _model("smollm2"),
        "settings": {"targets": list(TARGETS), "reference_seq_len": 256, "device": "cpu"},
        "dense": {"metrics": {"perplexity": dense, "token_accuracy": 0.42}},
        "calibration": {
            "source": "wikitext-2/valid.txt",
            "mode": "chunk",
            "num_samples": 64,
            "num_tokens": 16384,
            "max_seq_length": 256,
            "seed": 0,
            "fingerprint": "cd" * 32,
        },
        "points": points,
        "ablations": [],
    }
    return write_result("quality_smollm2", payload, protocol={"task": "perplexity"}, results_dir=folder)


def _speed_job(method: str, target: float, seconds: float, peak_mb: float) -> dict[str, Any]:
    return {
        "method": method,
        "target": target,
        "num_samples": 256,
        "load_seconds": 1.0,
        "calibration_seconds": 0.2,
        "capture_seconds": 0.1,
        "decomposition_seconds": seconds - 0.1,
        "compress_seconds": seconds,
        "eval_seconds": 4.0,
        "peak_rss_mb_compress": peak_mb,
        "peak_rss_mb_total": peak_mb + 10,
        "torch_threads": 2,
    }


def speed(folder: Path, *, passing: bool = True) -> list[Path]:
    out = []
    for key, seconds, peak in (("minilm", 12.0, 700.0), ("smollm2", 120.0, 2500.0)):
        factor = 1 if passing else 2
        jobs = [
            _speed_job(m, MODELS[key].speed_target, seconds * factor, peak * factor) for m in ("id", "svd")
        ]
        payload = {"suite": "speed", "quick": False, "model": _model(key), "settings": {}, "jobs": jobs}
        out.append(write_result(f"speed_{key}", payload, results_dir=folder))
    return out


def latency(folder: Path, *, passing: bool = True) -> Path:
    rows = []
    for batch, speedup in ((1, 1.7), (8, 1.8 if passing else 1.2)):
        rows.append(
            {
                "method": "id",
                "target": 0.5,
                "mac_ratio": 0.5,
                "mac_ratio_model": 0.5,
                "batch_size": batch,
                "seq_len": 128,
                "dense": {"latency_ms": 100.0, "throughput": 10.0},
                "compressed": {"latency_ms": 100 / speedup, "throughput": 10 * speedup},
                "speedup": speedup,
                "theoretical_speedup": 2.0,
                "theoretical_speedup_model": 2.0,
                "efficiency": speedup / 2,
            }
        )
    payload = {
        "suite": "latency",
        "quick": False,
        "model": _model("minilm"),
        "settings": {"device": "cpu", "seq_len": 128},
        "rows": rows,
    }
    return write_result("latency_minilm", payload, protocol={"statistic": "median"}, results_dir=folder)


def scale(folder: Path, exponent: float = 1.25) -> Path:
    jobs = []
    for size, params in (("20M", 2e7), ("50M", 5e7), ("100M", 1e8), ("200M", 2e8)):
        for method, scale_factor in (("id", 1e-9), ("svd-aa", 2e-9)):
            jobs.append(
                {
                    "size": size,
                    "method": method,
                    "params_before": int(params),
                    "seconds": scale_factor * params**exponent,
                    "peak_rss_mb_compress": params / 1e5,
                }
            )
    payload = {
        "suite": "scale",
        "quick": False,
        "jobs": jobs,
        "settings": {"target": 0.5, "calibration_samples": 32, "calibration_tokens": 128, "device": "cpu"},
    }
    return write_result("scale_llama", payload, results_dir=folder)


def picogpt(folder: Path) -> Path:
    from bench.picogpt import PAPER

    rows = [
        {
            "chi": 16,
            "goal_params": 191_872,
            "paper_token_accuracy": 0.516,
            "method": "id",
            "target": 0.17,
            "mac_ratio": 0.169,
            "params_after": 190_000,
            "params_gap": -1872,
            "metrics": {"token_accuracy": 0.41},
        },
        {
            "chi": 4,
            "goal_params": 78_336,
            "paper_token_accuracy": 0.368,
            "method": "id",
            "error": "no target in (0, 1] could be met",
        },
        {
            "chi": 8,
            "goal_params": 110_592,
            "paper_token_accuracy": 0.468,
            "method": "svd",
            "target": 0.05,
            "mac_ratio": 0.05,
            "params_after": 150_000,
            "params_gap": 39_408,
            "metrics": {"token_accuracy": 0.3},
        },
    ]
    payload = {
        "suite": "picogpt",
        "quick": False,
        "paper": PAPER,
        "rows": rows,
        "dense": {
            "params": 1_015_360,
            "metrics": {"token_accuracy": 0.50, "perplexity": 4.5},
            "train": {"recipe": {"n_layer": 4, "n_embd": 128, "steps": 1000}, "seconds": 900},
        },
    }
    return write_result("picogpt_shakespeare", payload, results_dir=folder)


def everything(folder: Path, *, passing: bool = True) -> None:
    quality_minilm(folder, passing=passing)
    quality_smollm2(folder, passing=passing)
    speed(folder, passing=passing)
    latency(folder, passing=passing)
    scale(folder)
    picogpt(folder)

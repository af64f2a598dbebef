"""Inference speed: each compressed artifact against the dense model, same device, batch sizes 1 and 8.

For every (method, target): compress a copy of the dense model, save it as an artifact
(bench/cache/artifacts/...), reload it with `load_compressed` (so what is timed is what ships),
and time it against the dense model with `workers.evaluation.compare_latency`: identical seeded
random token ids, warm-up, interleaved timed runs, median latency (see that module's protocol).
Each row also gives the theoretical speed-up 1/mac_ratio (blocks) and 1/mac_ratio_model (with the
LM head or classifier) and the measured speed-up as a fraction of the latter ("efficiency"):
MACs are a prediction, the measurement is the result.

Writes bench/results/latency_<model>.json.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path
from typing import Any

from bench.common import write_result
from bench.harness import CACHE, calibrate, compress_point, data_file, load_dense
from bench.settings import MODELS, ModelBench, Settings

log = logging.getLogger(__name__)


def run(settings: Settings, results_dir: Path) -> list[Path]:
    return [run_model(MODELS[key], settings, results_dir) for key in settings.models]


def run_model(bench: ModelBench, settings: Settings, results_dir: Path) -> Path:
    dense, tokenizer, _ = load_dense(bench)
    calib, _ = calibrate(bench, tokenizer, settings.samples_for(bench), settings.seed)
    folder = CACHE / ("artifacts-quick" if settings.quick else "artifacts") / bench.key
    rows: list[dict[str, Any]] = []
    protocol: dict[str, Any] = {}
    for label in settings.latency_methods:
        for target in settings.latency_targets:
            model, record = compress_point(
                dense,
                calib.batches,
                label=label,
                target=target,
                reference_seq_len=bench.reference_seq_len,
                device=settings.device,
                seed=settings.seed,
            )
            if model is None:
                rows.append(record)
                continue
            shipped = _round_trip(model, tokenizer, record, bench, folder / f"{label}-{target}")
            del model
            for batch_size in settings.latency_batches:
                row, protocol = _measure(dense, shipped, record, bench, settings, batch_size)
                rows.append(row)
                log.info(
                    "%s %s @ %.2f bs %d: speed-up %.2f (theory %.2f)",
                    bench.key,
                    label,
                    target,
                    batch_size,
                    row["speedup"],
                    row["theoretical_speedup_model"],
                )
    protocol = {**protocol, "batch_size": list(settings.latency_batches)}  # rows carry their own
    payload = {
        "suite": "latency",
        "quick": settings.quick,
        "model": dataclasses.asdict(bench),
        "settings": {
            "methods": settings.latency_methods,
            "targets": settings.latency_targets,
            "batch_sizes": settings.latency_batches,
            "seq_len": bench.latency_seq_len,
            "device": settings.device,
            "iters": settings.latency_iters,
            "min_seconds": settings.latency_min_seconds,
        },
        "rows": rows,
    }
    return write_result(
        f"latency_{bench.key}",
        payload,
        seeds={"calibration": settings.seed, "inputs": 0},
        data_files=[data_file(bench.calibration)],
        protocol=protocol,
        results_dir=results_dir,
    )


def _round_trip(model: Any, tokenizer: Any, record: dict[str, Any], bench: ModelBench, out: Path) -> Any:
    """Save the compressed model as an artifact and load it back the way a user would."""
    from workers.compression.artifacts import load_compressed, save_compressed

    model.cpu()
    report = {k: v for k, v in record.items() if k != "params"} | {"method_params": record["params"]}
    save_compressed(model, tokenizer, out, report, source={"model_id": bench.model_id})
    shipped, _ = load_compressed(out, with_tokenizer=False)
    shutil.rmtree(out, ignore_errors=True)  # artifacts are rebuilt on every run; keep the cache small
    return shipped


def _measure(
    dense: Any, shipped: Any, record: dict[str, Any], bench: ModelBench, settings: Settings, batch_size: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    from workers.evaluation import compare_latency

    result = compare_latency(
        dense,
        shipped,
        batch_size=batch_size,
        seq_len=bench.latency_seq_len,
        device=settings.device,
        iters=settings.latency_iters,
        min_seconds=settings.latency_min_seconds,
        seed=0,
    )
    theory_block, theory_model = 1 / record["mac_ratio"], 1 / record["mac_ratio_model"]
    row = {
        "method": record["method"],
        "target": record["target"],
        "params": record["params"],
        "mac_ratio": record["mac_ratio"],
        "mac_ratio_model": record["mac_ratio_model"],
        "params_before": record["params_before"],
        "params_after": record["params_after"],
        "batch_size": batch_size,
        "seq_len": bench.latency_seq_len,
        "dense": result["baseline"],
        "compressed": result["compressed"],
        "speedup": result["speedup"],
        "theoretical_speedup": theory_block,
        "theoretical_speedup_model": theory_model,
        "efficiency": result["speedup"] / theory_model,
    }
    return row, result["protocol"]

"""Compression speed: wall time and peak memory per model and method, one fresh process per job.

Time is split as the pipeline splits it: load (excluded from every bar), calibration (sampling and
tokenizing the calibration set, then the engine's capture of the first block's inputs),
decomposition (the engine's planning pass, budget allocation and compression pass) and evaluation.
"compress seconds" is the engine's wall time (capture + planning + compression), the figure
`run_pipeline` reports as `seconds` and the issue-2 bars are about: model load and evaluation
excluded. Peak memory: see `bench.jobs` (ru_maxrss of the job's own process, read right after
compression and at the end).

Each model runs at its `speed_target` (MiniLM 0.5, SmolLM2 0.7: the issue-2 bars).
Writes bench/results/speed_<model>.json.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

from bench.common import write_result
from bench.jobs import cuda_peak_mb, peak_rss_mb, run_in_subprocess
from bench.settings import MODELS, Settings

log = logging.getLogger(__name__)


def run(settings: Settings, results_dir: Path) -> list[Path]:
    paths = []
    for key in settings.models:
        bench = MODELS[key]
        jobs = [_job(settings, key, label) for label in settings.speed_methods]
        records = []
        for job in jobs:
            log.info("speed job %s", job)
            records.append(run_in_subprocess("speed", job))
            log.info("-> %s", {k: v for k, v in records[-1].items() if k.endswith(("seconds", "_mb"))})
        payload = {
            "suite": "speed",
            "quick": settings.quick,
            "model": dataclasses.asdict(bench),
            "settings": {
                "target": bench.speed_target,
                "methods": settings.speed_methods,
                "device": settings.device,
                "num_samples": settings.samples_for(bench),
                "threads": settings.threads,
            },
            "jobs": records,
        }
        paths.append(
            write_result(
                f"speed_{key}",
                payload,
                seeds={"calibration": settings.seed, "torch": settings.seed},
                data_files=_files(key),
                results_dir=results_dir,
                protocol={
                    "process": "one fresh python process per job (python -m bench.jobs speed ...)",
                    "peak_memory": "ru_maxrss of the job process (includes the loaded model), MiB",
                    "compress_seconds": "engine wall time (capture + planning + compression); "
                    "load and evaluation excluded",
                    "calibration_seconds": "sampling + tokenizing the calibration set (capture listed apart)",
                },
            )
        )
    return paths


def _files(key: str) -> list[Path]:
    from bench.harness import data_file

    bench = MODELS[key]
    return [data_file(bench.eval_file), data_file(bench.calibration)]


def _job(settings: Settings, key: str, label: str) -> dict[str, Any]:
    return {
        "model": key,
        "method": label,
        "target": MODELS[key].speed_target,
        "num_samples": settings.samples_for(MODELS[key]),
        "eval_limit": settings.eval_limit,
        "eval_max_tokens": settings.eval_max_tokens,
        "device": settings.device,
        "seed": settings.seed,
        "threads": settings.threads,
    }


def speed_job(job: dict[str, Any]) -> dict[str, Any]:
    """The child side: load, calibrate, compress (timed, memory checkpoints), evaluate."""
    from bench.harness import Evaluator, calibrate, compress_point, evaluate_point, load_dense

    bench = MODELS[job["model"]]
    settings = Settings(
        device=job["device"],
        seed=job["seed"],
        eval_limit=job["eval_limit"],
        eval_max_tokens=job["eval_max_tokens"],
    )
    dense, tokenizer, load_seconds = load_dense(bench)
    rss_loaded = peak_rss_mb()
    calib, calib_seconds = calibrate(bench, tokenizer, job["num_samples"], job["seed"])
    model, record = compress_point(
        dense,
        calib.batches,
        label=job["method"],
        target=job["target"],
        reference_seq_len=bench.reference_seq_len,
        device=job["device"],
        seed=job["seed"],
        in_place=True,
    )
    rss_compress = peak_rss_mb()
    start = time.perf_counter()
    if model is not None:
        evaluate_point(Evaluator.build(bench, settings), model, tokenizer, record)
    eval_seconds = time.perf_counter() - start
    timings = record.get("timings", {})
    return {
        **job,
        **{k: v for k, v in record.items() if k not in ("layers", "params_before")},
        "params_before": record.get("params_before"),
        "load_seconds": load_seconds,
        "calibration_seconds": calib_seconds,
        "capture_seconds": timings.get("capture", 0.0),
        # planning pass + budget allocation + compression pass (everything in the engine but capture)
        "decomposition_seconds": timings.get("total", 0.0) - timings.get("capture", 0.0),
        "compress_seconds": record.get("seconds"),
        "eval_seconds": eval_seconds,
        "peak_rss_mb_loaded": rss_loaded,
        "peak_rss_mb_compress": rss_compress,
        "peak_rss_mb_total": peak_rss_mb(),
        "cuda_peak_mb": cuda_peak_mb(job["device"]),
        "calibration_tokens": calib.num_tokens,
    }

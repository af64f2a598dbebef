"""The factorization families beside id and svd: quality, the artifact's latency, compression time.

Per model: load it once, evaluate it once, build the calibration set once; then for every
(method, target) compress a deep copy with the engine, evaluate it with the model's protocol
(the same as the quality suite), save the artifact and load it back (`load_compressed`: what
ships), check the reloaded model computes what the compressed one did (fp32, atol 1e-5, the
check a job runs), and time it against the dense model (`compare_latency`: identical seeded
random ids, warm-up, interleaved runs, median). Each row records the achieved block and
whole-model MAC ratios, the predicted speed-up 1/mac_ratio_model, the measured one, compression
seconds with the engine's split, and what the plan built (how many matrices of each kind, and
the factor shapes per layer in `layers`).

For `mpo` at the smallest target the row also carries a profile (torch.profiler, CPU, batch 8)
of the shipped model: the share of time spent inside the tensor-train Linears, and the top
operators by self time, which is where the gap between its MAC count and its latency goes.

The plain (weight-space) fits run as ablations on `factor_ablation_models`.

Writes bench/results/factorizations_<model>.json.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from bench.common import write_result
from bench.harness import (
    CACHE,
    Evaluator,
    calibrate,
    calibration_facts,
    compress_point,
    data_file,
    evaluate_point,
    load_dense,
)
from bench.latency import _round_trip
from bench.settings import MODELS, ModelBench, Settings

log = logging.getLogger(__name__)


def run(settings: Settings, results_dir: Path) -> list[Path]:
    return [run_model(MODELS[key], settings, results_dir) for key in settings.factor_models]


def run_model(bench: ModelBench, settings: Settings, results_dir: Path) -> Path:
    dense, tokenizer, load_seconds = load_dense(bench)
    evaluate = Evaluator.build(bench, settings)
    dense_metrics, protocol = evaluate(dense, tokenizer) if settings.factor_measure else ({}, {})
    log.info("%s dense: %s", bench.key, dense_metrics)
    calib, calib_seconds = calibrate(bench, tokenizer, settings.samples_for(bench), settings.seed)
    folder = CACHE / ("artifacts-quick" if settings.quick else "artifacts") / f"factor-{bench.key}"
    labels = list(settings.factor_methods)
    if bench.key in settings.factor_ablation_models:
        labels += list(settings.factor_ablations)
    points = []
    latency_protocol: dict[str, Any] = {}
    for label in labels:
        for target in settings.factor_targets:
            if label.endswith("-plain") and target == max(settings.factor_targets):
                continue  # the ablations: the two smaller targets
            record, latency_protocol = _point(bench, settings, dense, tokenizer, evaluate, calib, label,
                                              target, folder, latency_protocol)
            points.append(record)
    payload = {
        "suite": "factorizations",
        "quick": settings.quick,
        "model": dataclasses.asdict(bench),
        "settings": {
            "targets": settings.factor_targets,
            "methods": labels,
            "device": settings.device,
            "reference_seq_len": bench.reference_seq_len,
            "of": "blocks",
            "latency": {"batch_sizes": settings.factor_latency_batches, "seq_len": bench.latency_seq_len,
                        "iters": settings.latency_iters, "min_seconds": settings.latency_min_seconds,
                        "threads": torch.get_num_threads()},
        },
        "dense": {"metrics": dense_metrics, "eval_seconds": protocol.get("seconds"),
                  "load_seconds": load_seconds},
        "calibration": {**calibration_facts(bench, calib), "seconds": calib_seconds},
        "points": points,
    }
    # the default methods write factorizations_<model>.json; a subset (--factor-methods) its own file,
    # so that one model's families can run in parallel processes
    default = settings.factor_methods == Settings().factor_methods or settings.quick
    name = f"factorizations_{bench.key}" + ("" if default else "-" + "-".join(settings.factor_methods))
    if settings.factor_targets != Settings().factor_targets and not settings.quick:
        name += "-at-" + "-".join(str(t) for t in settings.factor_targets)
    if not settings.factor_measure:
        name += f"-targets-{settings.samples_for(bench)}-samples"
    return write_result(
        name,
        payload,
        seeds={"calibration": settings.seed, "torch": settings.seed, "inputs": 0},
        data_files=[*evaluate.files, data_file(bench.calibration)],
        protocol={**protocol, "latency": latency_protocol},
        results_dir=results_dir,
    )


def _point(bench: ModelBench, settings: Settings, dense: Any, tokenizer: Any, evaluate: Evaluator, calib: Any,
           label: str, target: float, folder: Path, latency_protocol: dict[str, Any]
           ) -> tuple[dict[str, Any], dict[str, Any]]:
    from workers.evaluation import compare_latency

    model, record = compress_point(
        dense, calib.batches, label=label, target=target, reference_seq_len=bench.reference_seq_len,
        device=settings.device, seed=settings.seed,
    )
    if model is None:
        log.warning("%s %s @ %.2f: %s", bench.key, label, target, record.get("error"))
        return record, latency_protocol
    record["kinds"] = _kinds(model)
    if settings.factor_measure:
        evaluate_point(evaluate, model, tokenizer, record)
    probe = {k: v[:2] for k, v in calib.batches[0].items()}
    with torch.no_grad():
        expected = _main_output(model.cpu().eval(), probe)
    shipped = _round_trip(model, tokenizer, record, bench, folder / f"{label}-{target}")
    with torch.no_grad():
        got = _main_output(shipped, probe)
    record["reload_max_abs_diff"] = float((got - expected).abs().max())
    record["reload_exact"] = bool(torch.allclose(got, expected, atol=1e-5, rtol=0))
    del model
    record["latency"] = []
    for batch_size in settings.factor_latency_batches if settings.factor_measure else ():
        result = compare_latency(
            dense, shipped, batch_size=batch_size, seq_len=bench.latency_seq_len, device=settings.device,
            iters=settings.latency_iters, min_seconds=settings.latency_min_seconds, seed=0,
        )
        latency_protocol = result["protocol"]
        record["latency"].append({
            "batch_size": batch_size,
            "seq_len": bench.latency_seq_len,
            "dense_ms": result["baseline"]["latency_ms"],
            "compressed_ms": result["compressed"]["latency_ms"],
            "speedup": result["speedup"],
            "predicted_speedup": 1 / record["mac_ratio_model"],
        })
    if (settings.factor_measure and label.startswith("mpo") and target == min(settings.factor_targets)
            and not label.endswith("-plain")):
        record["profile"] = _profile(shipped, bench, batch_size=max(settings.factor_latency_batches))
    log.info("%s %s @ %.2f: mac %.3f, %s, %.1f s, speed-up %s", bench.key, label, target, record["mac_ratio"],
             record.get("metrics"), record["seconds"], [round(r["speedup"], 2) for r in record["latency"]])
    del shipped
    return record, latency_protocol


def _main_output(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    out = model(**batch)
    logits = getattr(out, "logits", None)
    return logits if logits is not None else out.last_hidden_state


def _kinds(model: Any) -> dict[str, int]:
    """How many block Linears of each kind the compressed model has."""
    from workers.compression.adapters import ModelAdapter
    from workers.compression.linears import spec_of

    adapter = ModelAdapter(model)
    return dict(Counter(spec_of(adapter.linear(layer, name)).kind
                        for layer in adapter.layers for name in adapter.spec.linears))


def _profile(model: Any, bench: ModelBench, *, batch_size: int) -> dict[str, Any]:
    """Where the time of one forward goes: inside the tensor-train Linears or elsewhere, top ops."""
    from torch.profiler import ProfilerActivity, profile, record_function

    from workers.compression.linears.mpo import MPOLinear
    from workers.evaluation.latency import random_inputs

    model = copy.deepcopy(model).eval()
    handles = []
    for module in model.modules():
        if isinstance(module, MPOLinear):
            original = module.forward

            def timed(x: torch.Tensor, _f: Any = original) -> torch.Tensor:
                with record_function("pare::mpo_linear"):
                    return _f(x)  # type: ignore[no-any-return]

            module.forward = timed  # type: ignore[method-assign]
            handles.append(module)
    x = random_inputs(model, batch_size=batch_size, seq_len=bench.latency_seq_len, seed=0)
    with torch.no_grad():
        model(**x)  # warm-up
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(3):
                model(**x)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    mpo = next((e.cpu_time_total for e in events if e.key == "pare::mpo_linear"), 0.0)
    top = sorted((e for e in events if not e.key.startswith("pare::")),
                 key=lambda e: -e.self_cpu_time_total)[:8]
    return {
        "batch_size": batch_size,
        "seq_len": bench.latency_seq_len,
        "mpo_linears": len(handles),
        "share_in_mpo_linears": mpo / total if total else None,
        "top_ops": [{"op": e.key, "self_share": e.self_cpu_time_total / total, "calls": e.count}
                    for e in top],
    }

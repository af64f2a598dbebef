"""Quality against MAC budget: every method at every target, plus the ablations of ID.

Per model: load it once, build the calibration set once, evaluate the dense model once, then for
each (method, target) compress a fresh deep copy and evaluate it. Each point records the method and
its full parameters, the target, the achieved block and whole-model MAC ratios, parameters before
and after, compression seconds with the engine's split (capture, planning, compression) and the
metrics. Ablations of ID (at `ablation_targets`), one change at a time from its defaults: staged
vs not, uniform instead of the default allocation ("auto": global for encoders, uniform for
causal LMs), with and without head pruning, and the number of calibration samples.

Writes bench/results/quality_<model>.json.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from bench.common import write_result
from bench.harness import (
    Evaluator,
    calibrate,
    calibration_facts,
    compress_point,
    data_file,
    evaluate_point,
    load_dense,
)
from bench.settings import MODELS, ModelBench, Settings

log = logging.getLogger(__name__)

# ablation variant -> (what it varies, ID parameter overrides)
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "unstaged": ("staged", {"staged": False}),
    "uniform": ("allocation", {"allocation": "uniform"}),
    "no_heads": ("prune_heads", {"prune_heads": False}),
}


def run(settings: Settings, results_dir: Path) -> list[Path]:
    return [run_model(MODELS[key], settings, results_dir) for key in settings.models]


class _Scorer:
    """Compress-and-evaluate with the dense model, tokenizer and evaluator of one model."""

    def __init__(
        self,
        bench: ModelBench,
        settings: Settings,
        dense: Any,
        tokenizer: Any,
        evaluate: Evaluator,
        dense_metrics: dict[str, float],
    ):
        self.bench, self.settings, self.dense, self.tokenizer, self.evaluate = (
            bench,
            settings,
            dense,
            tokenizer,
            evaluate,
        )
        self.dense_metrics = dense_metrics

    def point(
        self, batches: list[Any], label: str, target: float, overrides: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        model, record = compress_point(
            self.dense,
            batches,
            label=label,
            target=target,
            reference_seq_len=self.bench.reference_seq_len,
            device=self.settings.device,
            seed=self.settings.seed,
            overrides=overrides,
        )
        if model is not None and _unchanged(record):
            # The engine kept everything (target 1.0 shortcut): the model is the dense one, and
            # evaluation is deterministic, so its metrics are the dense metrics already measured.
            record["metrics"] = dict(self.dense_metrics)
            record["metrics_from"] = "dense (model unchanged)"
        elif model is not None:
            evaluate_point(self.evaluate, model, self.tokenizer, record)
        del model
        log.info(
            "%s %s @ %.2f: mac %.3f, %s, %.1f s",
            self.bench.key,
            label,
            target,
            record.get("mac_ratio", float("nan")),
            record.get("metrics", record.get("error")),
            record.get("seconds", 0.0),
        )
        return record


def _unchanged(record: dict[str, Any]) -> bool:
    return record.get("mac_ratio") == 1.0 and record.get("params_after") == record.get("params_before")


def run_model(bench: ModelBench, settings: Settings, results_dir: Path) -> Path:
    dense, tokenizer, load_seconds = load_dense(bench)
    evaluate = Evaluator.build(bench, settings)
    dense_metrics, protocol = evaluate(dense, tokenizer)
    log.info("%s dense: %s", bench.key, dense_metrics)
    calib, calib_seconds = calibrate(bench, tokenizer, settings.samples_for(bench), settings.seed)
    scorer = _Scorer(bench, settings, dense, tokenizer, evaluate, dense_metrics)
    points = [
        scorer.point(calib.batches, label, target)
        for label in settings.methods
        for target in settings.targets
    ]
    ablations = _ablations(scorer, calib, points) if bench.key in settings.ablation_models else []
    payload = {
        "suite": "quality",
        "quick": settings.quick,
        "model": dataclasses.asdict(bench),
        "settings": {
            "targets": settings.targets,
            "methods": settings.methods,
            "device": settings.device,
            "reference_seq_len": bench.reference_seq_len,
            "of": "blocks",
        },
        "dense": {
            "metrics": dense_metrics,
            "eval_seconds": protocol.get("seconds"),
            "load_seconds": load_seconds,
        },
        "calibration": {**calibration_facts(bench, calib), "seconds": calib_seconds},
        "points": points,
        "ablations": ablations,
    }
    return write_result(
        f"quality_{bench.key}",
        payload,
        seeds={"calibration": settings.seed, "torch": settings.seed},
        data_files=[*evaluate.files, data_file(bench.calibration)],
        protocol=protocol,
        results_dir=results_dir,
    )


def _ablations(scorer: _Scorer, calib: Any, points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The reference (ID defaults, the model's calibration) and one change at a time from it."""
    settings, bench = scorer.settings, scorer.bench
    default_samples = settings.samples_for(bench)
    out: list[dict[str, Any]] = []
    for target in settings.ablation_targets:
        reference = next((p for p in points if p["method"] == "id" and p["target"] == target), None)
        reference = reference or scorer.point(calib.batches, "id", target)
        out.append({"ablation": "reference", "variant": "default", "samples": default_samples, **reference})
        for variant in settings.ablation_variants:
            varies, overrides = VARIANTS[variant]
            record = scorer.point(calib.batches, "id", target, overrides)
            out.append({"ablation": varies, "variant": variant, "samples": default_samples, **record})
    for samples in settings.ablation_samples:
        if samples == default_samples:
            continue
        sized, _ = calibrate(bench, scorer.tokenizer, samples, settings.seed)
        for target in settings.ablation_targets:
            record = scorer.point(sized.batches, "id", target)
            out.append({"ablation": "samples", "variant": f"{samples} samples", "samples": samples, **record})
    return out

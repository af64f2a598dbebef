"""What the suites share: loading a dense model once, calibration, evaluation, and one compressed point.

The quality suite evaluates the dense model once and compresses a fresh `copy.deepcopy` of it per
point (the engine rewrites a model in place), instead of calling `run_pipeline` per point, which
would reload, recalibrate and re-evaluate the baseline every time. The numbers are the same ones the
pipeline computes: `compress` is the engine entry point `run_pipeline` calls, and `run_task` is
the evaluation it runs.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bench.common import REPO
from bench.settings import FACTOR_METHODS, METHODS, SST2_MODEL_ID, ModelBench, Settings
from core.errors import PareError
from workers.data import CalibrationSet, DataSource, build_calibration, default_data_dir

log = logging.getLogger(__name__)

CACHE = REPO / "bench" / "cache"


def data_file(relative: str) -> Path:
    """The file part of a "FILE[:column]" spec, under the shared data dir."""
    return default_data_dir() / relative.split(":", 1)[0]


def first_rows(path: Path, n: int, folder: Path) -> Path:
    """A copy of a delimited file's header and first n data lines (GLUE tsv: one row per line)."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{path.parent.name}_{path.stem}_first{n}{path.suffix}"
    out.write_text("".join(lines[: n + 1]), encoding="utf-8")
    return out


def load_dense(bench: ModelBench) -> tuple[Any, Any, float]:
    """(model, tokenizer, seconds); places the bundled models in the HF cache and fine-tunes the SST-2
    classifier first when it is not cached yet (a few CPU minutes, once)."""
    from workers.models import import_bundled, load_model

    start = time.perf_counter()
    if bench.model_id == SST2_MODEL_ID:
        from workers.evaluation.finetune import FinetuneRecipe, finetune_sst2

        finetune_sst2(FinetuneRecipe(), threads=1)  # one thread trains faster on a shared CPU
    else:
        import_bundled()
    model, tokenizer = load_model(bench.model_id)
    return model, tokenizer, time.perf_counter() - start


def calibrate(bench: ModelBench, tokenizer: Any, num_samples: int, seed: int) -> tuple[CalibrationSet, float]:
    start = time.perf_counter()
    source = DataSource.parse(str(default_data_dir() / bench.calibration))
    calib = build_calibration(
        tokenizer,
        source,
        num_samples=num_samples,
        max_seq_length=bench.max_seq_length,
        seed=seed,
        mode=bench.calib_mode,
    )
    return calib, time.perf_counter() - start


def calibration_facts(bench: ModelBench, calib: CalibrationSet) -> dict[str, Any]:
    return {
        "source": bench.calibration,
        "mode": calib.mode,
        "num_samples": calib.num_samples,
        "num_tokens": calib.num_tokens,
        "max_seq_length": calib.max_seq_length,
        "seed": calib.seed,
        "fingerprint": calib.fingerprint,
    }


@dataclass
class Evaluator:
    """The task, data and options one model is scored with; `files` are hashed into the result."""

    bench: ModelBench
    data: DataSource
    options: dict[str, Any]
    device: str
    files: list[Path] = field(default_factory=list)
    note: str = ""

    @classmethod
    def build(cls, bench: ModelBench, settings: Settings) -> Evaluator:
        path = data_file(bench.eval_file)
        files, note = [path], ""
        options = dict(bench.eval_options)
        if settings.eval_limit and bench.task != "perplexity":
            path = first_rows(path, settings.eval_limit, CACHE / "subsets")
            note = f"first {settings.eval_limit} rows of {bench.eval_file}"
        if settings.eval_max_tokens and bench.task == "perplexity":
            options["max_tokens"] = min(options.get("max_tokens") or math.inf, settings.eval_max_tokens)
            note = f"first {options['max_tokens']} tokens of {bench.eval_file}"
        return cls(bench, DataSource(path=str(path)), options, settings.device, files, note)

    def __call__(self, model: Any, tokenizer: Any) -> tuple[dict[str, float], dict[str, Any]]:
        """(metrics, protocol); the protocol carries the evaluation's own wall time."""
        from workers.evaluation import run_task

        result = run_task(
            self.bench.task, model, tokenizer, data=self.data, options=self.options, device=self.device
        )
        protocol = {**result.protocol, "subset": self.note} if self.note else result.protocol
        return result.metrics, protocol


def method_spec(label: str, overrides: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """(engine method, its full validated parameters with defaults) for a bench method label."""
    from workers.compression.methods import get_method

    method, params = {**METHODS, **FACTOR_METHODS}[label]
    merged = {**params, **(overrides or {})}
    return method, get_method(method).Params(**merged).model_dump()


def compress_point(
    dense: torch.nn.Module,
    batches: list[dict[str, torch.Tensor]],
    *,
    label: str,
    target: float,
    reference_seq_len: int,
    device: str,
    seed: int,
    overrides: dict[str, Any] | None = None,
    in_place: bool = False,
) -> tuple[torch.nn.Module | None, dict[str, Any]]:
    """Compress a deep copy of `dense` (or `dense` itself when in_place: a job that owns its model
    and must not hold two); (model or None on a domain error, the point's record)."""
    from workers.compression.engine import CompressionSpec, compress

    method, params = method_spec(label, overrides)
    record: dict[str, Any] = {"method": label, "engine_method": method, "params": params, "target": target}
    model = dense if in_place else copy.deepcopy(dense)
    torch.manual_seed(seed)
    start = time.perf_counter()
    try:
        report = compress(
            model, batches, CompressionSpec(method, target, reference_seq_len, params), device=device
        )
    except PareError as exc:
        log.warning("%s at %.2f failed: %s", label, target, exc)
        return None, {**record, "error": f"{type(exc).__name__}: {exc}"}
    seconds = time.perf_counter() - start
    macs = report["macs"]
    record.update(
        mac_ratio=macs["mac_ratio"],
        mac_ratio_model=macs["mac_ratio_model"],
        params_before=report["params"]["before"],
        params_after=report["params"]["after"],
        seconds=seconds,
        timings=report["timings"],
        layers=_layer_summary(report["layers"]),
    )
    return model, record


def _layer_summary(layers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per block: what it kept (heads, neurons or ranks), without the long per-layer error lists."""
    keep = ("index", "heads", "kv_heads", "neurons", "ranks", "linears", "neuron_error", "head_error")
    return [{k: v for k, v in layer.items() if k in keep} for layer in layers]


def evaluate_point(
    evaluate: Evaluator, model: torch.nn.Module, tokenizer: Any, record: dict[str, Any]
) -> None:
    """Score a compressed model into its record (metrics and eval seconds)."""
    metrics, protocol = evaluate(model, tokenizer)
    record["metrics"] = metrics
    record["eval_seconds"] = protocol.get("seconds")

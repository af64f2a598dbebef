"""The job pipeline: load, calibrate, evaluate the baseline, compress, evaluate, save, verify.

Callable without Celery: `pare compress` and the Celery task both call `run_pipeline` with a
`PipelineConfig`, so a job submitted over HTTP and the same settings on the command line run
the same code and give the same numbers.

Torch-free at import time (workers.tasks imports this module for its types; torch, transformers
and the engine are imported inside the steps that need them).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import Cancelled
from workers.data import DataSource

if TYPE_CHECKING:
    from torch import nn

    from core.hub import ResolvedModel
    from core.targets import Targets
    from workers.compression.adapters import ModelAdapter
    from workers.compression.engine import CompressionSpec
    from workers.data import CalibrationSet

__all__ = ["Cancelled", "EvalTask", "Event", "PipelineConfig", "PipelineResult", "run_pipeline"]


@dataclass(frozen=True)
class EvalTask:
    task: str  # perplexity | classification | sts | latency
    data: DataSource | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PipelineConfig:
    model: str  # hub id (resolved through the HF cache) or a local directory
    method: str  # id | svd | magnitude
    mac_target: float
    calibration: DataSource
    out_dir: Path
    revision: str | None = None
    method_params: dict[str, Any] = field(default_factory=dict)
    reference_seq_len: int | None = None  # default: max_seq_length
    num_samples: int = 128
    max_seq_length: int = 128
    seed: int = 0
    # auto: concatenate-and-chunk for causal LMs (GPTQ's sampling), the data's own rule otherwise
    calibration_mode: str = "auto"
    evaluation: tuple[EvalTask, ...] = ()
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # the CLI may name local folders; a job from the API resolves exactly as its submit did (the
    # cache, then the operator's model root), never a folder relative to the worker
    allow_local: bool = True
    model_root: Path | None = None
    # several MAC ratios (a sweep) or a quality bound (a search), core.targets; None: mac_target
    targets: Targets | None = None


@dataclass(frozen=True)
class Event:
    """One progress report. stage: loading|calibrating|evaluating|compressing|saving|verifying."""

    stage: str
    percent: float
    message: str = ""
    block: int | None = None
    total_blocks: int | None = None
    eta_seconds: float | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class PipelineResult:
    artifact_dir: Path | None  # None: a search whose bound no ratio met (nothing to save)
    mac_ratio: float  # achieved kept ratio of block MACs
    mac_ratio_model: float  # whole model, LM head / classifier included
    params_before: int
    params_after: int
    seconds: float  # compression wall time only
    timings: dict[str, float]  # seconds per stage
    metrics: dict[str, dict[str, float]]  # {"baseline": {...}, "compressed": {...}}
    protocols: dict[str, dict[str, Any]]  # task -> protocol
    resolved: dict[str, Any]  # model revision sha, calibration fingerprint, versions, device
    report: dict[str, Any]  # the artifact's compression.json
    # a sweep: one summary per target (its artifact in a folder of its own, core.targets.label),
    # the fields above being the first target's; a search: the walk and its outcome
    points: list[dict[str, Any]] = field(default_factory=list)
    search: dict[str, Any] | None = None

    @property
    def runtimes(self) -> list[str]:
        """What loads the artifact (compression.json's `runtimes`)."""
        return list(self.report.get("runtimes", ["pare"]))

    def summary(self) -> dict[str, Any]:
        """The JSON object `pare compress --json` prints last."""
        extra: dict[str, Any] = {}
        if self.points:
            extra["points"] = self.points
        if self.search is not None:
            extra["search"] = self.search
        return {
            **extra,
            "mac_ratio": self.mac_ratio,
            "mac_ratio_model": self.mac_ratio_model,
            "params_before": self.params_before,
            "params_after": self.params_after,
            "seconds": self.seconds,
            "timings": self.timings,
            "artifact": str(self.artifact_dir) if self.artifact_dir is not None else None,
            "runtimes": self.runtimes if self.artifact_dir is not None else [],
            "metrics": self.metrics,
            "protocols": self.protocols,
            "resolved": self.resolved,
        }


# Overall progress: each stage owns a slice of 0..100.
_STAGES = {
    "loading": (0, 5),
    "calibrating": (5, 10),
    "evaluating_baseline": (10, 20),
    "planning": (20, 45),
    "compressing": (45, 80),
    "evaluating": (80, 94),
    "saving": (94, 97),
    "verifying": (97, 100),
}


class _Reporter:
    """Turns stage and block counts into `Event`s with overall percent and ETA."""

    def __init__(self, on_event: Callable[[Event], None] | None, planning: bool) -> None:
        self.on_event = on_event
        self.planning = planning
        self.stage_started: dict[str, float] = {}
        # (k, n): the k-th of n targets of a sweep or steps of a search is being compressed; the
        # stages from planning on then fill its n-th of the bar after the shared stages
        self.window: tuple[int, int] | None = None

    def __call__(self, stage: str, done: int = 0, total: int = 0, message: str = "", **data: Any) -> None:
        if self.on_event is None:
            return
        lo, hi = _STAGES[stage]
        if stage == "compressing" and not self.planning:
            lo = _STAGES["planning"][0]
        now = time.perf_counter()
        started = self.stage_started.setdefault(stage, now)
        fraction = done / total if total else 0.0
        per_block = stage in ("planning", "compressing")
        eta = (now - started) / fraction * (1 - fraction) if 0 < fraction < 1 else None
        percent = lo + (hi - lo) * fraction
        shared = _STAGES["planning"][0]
        if self.window is not None and percent >= shared:
            k, n = self.window
            percent = shared + (100 - shared) * (k + (percent - shared) / (100 - shared)) / n
        self.on_event(Event(
            stage=stage if not stage.startswith("evaluating") else "evaluating",
            percent=round(percent, 2),
            message=message or stage,
            block=done if per_block else None,
            total_blocks=total if per_block else None,
            eta_seconds=eta,
            data=data,
        ))


@dataclass
class _Loaded:
    """The model as loaded, seen through the one adapter the engine also uses."""

    resolved: ResolvedModel
    model: nn.Module
    tokenizer: Any
    adapter: ModelAdapter
    planning: bool  # the method runs a planning pass (the progress bar gives it a slice)


@dataclass
class _Scores:
    """What the evaluation steps measured: metrics of both phases and each task's protocol."""

    metrics: dict[str, dict[str, float]] = field(default_factory=lambda: {"baseline": {}, "compressed": {}})
    protocols: dict[str, dict[str, Any]] = field(default_factory=dict)


def resolve_device(device: str) -> str:
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def compression_spec(config: PipelineConfig) -> CompressionSpec:
    """The engine's view of the job: method, target, reference length (default max_seq_length)."""
    from workers.compression.engine import CompressionSpec

    return CompressionSpec(
        method=config.method,
        mac_target=config.mac_target,
        reference_seq_len=config.reference_seq_len or config.max_seq_length,
        params=dict(config.method_params),
    )


@contextmanager
def _timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    """Record the wall time of the block under `stage` (only when it completes)."""
    started = time.perf_counter()
    yield
    timings[stage] = time.perf_counter() - started


def run_pipeline(
    config: PipelineConfig,
    *,
    on_event: Callable[[Event], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> PipelineResult:
    """Run one compression job end to end; raises Cancelled, or a domain error from core.errors."""
    if config.targets is not None and config.targets.kind != "ratio":
        from workers.multi import run_multi

        return run_multi(config, on_event=on_event, should_cancel=should_cancel)
    spec = compression_spec(config)
    device = resolve_device(config.device)
    timings: dict[str, float] = {}
    scores = _Scores()
    with _timed(timings, "load"):
        loaded = _load(config, spec)
        report = _Reporter(on_event, loaded.planning)
        report("loading", 1, 1, f"loaded {loaded.resolved.model_id}")
    with _timed(timings, "calibration_data"):
        calibration = _calibration_data(config, loaded, report)
    with _timed(timings, "evaluate_baseline"):
        _evaluate(config, loaded, device, "baseline", scores, report)
        dense = _dense_copy(config, loaded.model)
    with _timed(timings, "compress"):  # the result's `seconds`
        engine_report = _compress(config, spec, loaded.adapter, calibration, device, report, should_cancel)
    with _timed(timings, "evaluate"):
        _evaluate(config, loaded, device, "compressed", scores, report)
        if dense is not None:
            _latency(config, dense, loaded.model, device, scores)
            del dense
    if should_cancel is not None and should_cancel():
        raise Cancelled("cancelled before saving")
    with _timed(timings, "save"):
        artifact = _save(config, loaded, calibration, engine_report, scores, report)
    with _timed(timings, "verify"):
        _verify(artifact, loaded.model, calibration, report)
    return _result(loaded, calibration, engine_report, scores, artifact, device, timings)


def _load(config: PipelineConfig, spec: CompressionSpec) -> _Loaded:
    """Resolve and inspect (refusals first), load on the CPU, and validate target and parameters
    against the model before any data is read."""
    from core.hub import inspect_model, resolve_model
    from workers.compression.adapters import ModelAdapter
    from workers.compression.engine import build_method
    from workers.models import load_model

    resolved = resolve_model(
        config.model, config.revision, allow_local=config.allow_local, model_root=config.model_root
    )
    inspect_model(resolved)
    model, tokenizer = load_model(resolved, device="cpu")
    adapter = ModelAdapter(model)
    method = build_method(spec, adapter)
    return _Loaded(resolved, model, tokenizer, adapter, planning=method.needs_planning_pass)


def _calibration_data(config: PipelineConfig, loaded: _Loaded, report: _Reporter) -> CalibrationSet:
    """Sample the calibration set; `auto` mode chunks the concatenated text for causal LMs."""
    from workers.data import build_calibration

    report("calibrating", 0, 1, "sampling calibration data")
    mode = config.calibration_mode
    if mode == "auto" and loaded.adapter.geometry.lm_head:
        mode = "chunk"
    return build_calibration(
        loaded.tokenizer, config.calibration, num_samples=config.num_samples,
        max_seq_length=config.max_seq_length, seed=config.seed, mode=mode,
    )


def _evaluate(
    config: PipelineConfig, loaded: _Loaded, device: str, phase: str, scores: _Scores, report: _Reporter,
    *, model: nn.Module | None = None, options: dict[str, dict[str, Any]] | None = None,
) -> None:
    """Every evaluation task but latency (timed on both models together, after compression), on
    `model` (default: the loaded one), a task's options updated from `options[task]`."""
    from workers.evaluation import run_task

    tasks = [t for t in config.evaluation if t.task != "latency"]
    stage = "evaluating_baseline" if phase == "baseline" else "evaluating"
    for i, task in enumerate(tasks):
        report(stage, i, len(tasks), f"{phase}: {task.task}")
        result = run_task(
            task.task, model if model is not None else loaded.model, loaded.tokenizer, data=task.data,
            options={**task.options, **(options or {}).get(task.task, {})}, device=device,
        )
        scores.metrics[phase].update(result.metrics)
        scores.protocols.setdefault(task.task, result.protocol)


def _dense_copy(config: PipelineConfig, model: nn.Module) -> nn.Module | None:
    """A CPU copy of the dense model when latency is to be compared, else None."""
    import copy

    if not any(task.task == "latency" for task in config.evaluation):
        return None
    return copy.deepcopy(model).cpu()


def _compress(
    config: PipelineConfig, spec: CompressionSpec, adapter: ModelAdapter, calibration: CalibrationSet,
    device: str, report: _Reporter, should_cancel: Callable[[], bool] | None,
) -> dict[str, Any]:
    """Seed torch, then rewrite the model in place; returns the engine's report."""
    import torch

    from workers.compression.engine import compress

    torch.manual_seed(config.seed)
    return compress(
        adapter, calibration.batches, spec, device=device,
        on_progress=lambda stage, done, total: report(stage, done, total, f"{stage} block {done}/{total}"),
        should_cancel=should_cancel,
    )


def _latency(
    config: PipelineConfig, dense: nn.Module, model: nn.Module, device: str, scores: _Scores
) -> None:
    """Time the dense copy and the compressed model together (interleaved, identical inputs)."""
    from workers.evaluation import compare_latency

    options = next(t.options for t in config.evaluation if t.task == "latency")
    result = compare_latency(dense, model, device=device, **options)
    for phase in ("baseline", "compressed"):
        scores.metrics[phase].update(result[phase])
    scores.metrics["compressed"]["speedup"] = result["speedup"]
    scores.protocols["latency"] = result["protocol"]
    dense.cpu()


def _save(
    config: PipelineConfig, loaded: _Loaded, calibration: CalibrationSet, engine_report: dict[str, Any],
    scores: _Scores, report: _Reporter, *, model: nn.Module | None = None, out_dir: Path | None = None,
) -> Path:
    """Write the artifact: the engine's report plus evaluation, source and calibration facts."""
    from workers.compression.artifacts import save_compressed

    report("saving", 0, 1, "writing the artifact")
    resolved = loaded.resolved
    source = {
        "model_id": resolved.model_id, "revision": resolved.revision, "config_sha256": resolved.config_sha256,
    }
    calib_facts = {
        "source": _describe(config.calibration), "fingerprint": calibration.fingerprint,
        "num_samples": calibration.num_samples, "num_tokens": calibration.num_tokens,
        "max_seq_length": config.max_seq_length, "mode": calibration.mode, "seed": config.seed,
        **engine_report["calibration"],  # what the engine saw: batches and tokens after repacking
    }
    evaluation = {"metrics": scores.metrics, "protocols": scores.protocols}
    # The report's own "calibration" would replace save_compressed's `calibration`: merge them here.
    manifest = {**engine_report, "calibration": calib_facts, "evaluation": evaluation}
    compressed = model if model is not None else loaded.model
    compressed.cpu()
    return save_compressed(
        compressed, loaded.tokenizer, out_dir or config.out_dir, manifest, source=source,
        calibration=calib_facts, source_dir=resolved.path,
    )


def _verify(artifact: Path, model: nn.Module, calibration: CalibrationSet, report: _Reporter) -> None:
    report("verifying", 0, 1, "reloading the artifact")
    verify_artifact(artifact, model, calibration.batches[:1])
    report("verifying", 1, 1, "artifact verified")


def _result(
    loaded: _Loaded, calibration: CalibrationSet, engine_report: dict[str, Any], scores: _Scores,
    artifact: Path, device: str, timings: dict[str, float],
) -> PipelineResult:
    from workers.compression.artifacts import library_versions

    macs = engine_report["macs"]
    return PipelineResult(
        artifact_dir=artifact,
        mac_ratio=macs["mac_ratio"],
        mac_ratio_model=macs["mac_ratio_model"],
        params_before=engine_report["params"]["before"],
        params_after=engine_report["params"]["after"],
        seconds=timings["compress"],
        timings={**timings, **{f"compress_{k}": v for k, v in engine_report["timings"].items()}},
        metrics=scores.metrics,
        protocols=scores.protocols,
        resolved={
            "model_id": loaded.resolved.model_id, "revision": loaded.resolved.revision,
            "calibration_fingerprint": calibration.fingerprint, "calibration_tokens": calibration.num_tokens,
            "device": device, "versions": library_versions(),
        },
        report=json.loads((artifact / "compression.json").read_text()),
    )


def _describe(source: DataSource) -> dict[str, Any]:
    return {k: v for k, v in dataclasses.asdict(source).items() if v is not None}


def verify_artifact(path: Path, model: nn.Module, batches: list[dict[str, Any]], atol: float = 1e-5) -> None:
    """Reload the artifact and require the same outputs as the in-memory model (fp32)."""
    import torch

    from core.errors import ArtifactMismatch
    from workers.compression.artifacts import load_compressed

    reloaded, _ = load_compressed(path, with_tokenizer=False)
    model.eval()
    with torch.no_grad():
        for batch in batches:
            expected = _main_output(model(**batch))
            got = _main_output(reloaded(**batch))
            diff = float((expected - got).abs().max())
            if diff > atol:
                raise ArtifactMismatch(
                    f"reloaded artifact differs from the compressed model (max |Δ| = {diff:.3g})"
                )


def _main_output(output: Any) -> Any:
    for name in ("logits", "last_hidden_state"):
        value = getattr(output, name, None)
        if value is not None:
            return value
    return output[0]

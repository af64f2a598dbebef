"""The job pipeline: load, calibrate, evaluate the baseline, compress, evaluate, save, verify.

Callable without Celery: `pare compress` and the Celery task both call `run_pipeline` with a
`PipelineConfig`, so a job submitted over HTTP and the same settings on the command line run
the same code and give the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workers.data import DataSource
from workers.errors import Cancelled

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
    evaluation: tuple[EvalTask, ...] = ()
    device: str = "auto"  # auto | cpu | cuda | cuda:N


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
    artifact_dir: Path
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

    def summary(self) -> dict[str, Any]:
        """The JSON object `pare compress --json` prints last."""
        return {
            "mac_ratio": self.mac_ratio,
            "mac_ratio_model": self.mac_ratio_model,
            "params_before": self.params_before,
            "params_after": self.params_after,
            "seconds": self.seconds,
            "timings": self.timings,
            "artifact": str(self.artifact_dir),
            "metrics": self.metrics,
            "protocols": self.protocols,
            "resolved": self.resolved,
        }


def run_pipeline(
    config: PipelineConfig,
    *,
    on_event: Callable[[Event], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> PipelineResult:
    """Run one compression job end to end; raises Cancelled, or a domain error from workers.errors."""
    raise NotImplementedError("lands with the engine")

"""Domain errors raised by the core; the service maps each `code` to an HTTP status in one place."""

from __future__ import annotations


class PareError(Exception):
    """Base class: `code` is stable and machine-readable, the message is for people."""

    code = "pare_error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class UnsupportedArchitecture(PareError):
    code = "unsupported_architecture"


class ModelRefused(PareError):
    """Remote code, pickle-only weights, an id that is a path or URL."""

    code = "model_refused"


class ModelNotFound(PareError):
    code = "model_not_found"


class ModelCorrupt(PareError):
    """The model's weight files do not parse (truncated, garbled or not safetensors at all)."""

    code = "model_corrupt"


class InvalidCalibrationData(PareError):
    code = "invalid_data"


class BudgetInfeasible(PareError):
    code = "budget_infeasible"


class InvalidSpec(PareError):
    code = "invalid_spec"


class Cancelled(Exception):
    """Raised at a block boundary when the caller's `should_cancel()` returned True."""


class ArtifactMismatch(PareError):
    """The saved artifact, reloaded, does not reproduce the in-memory compressed model."""

    code = "artifact_mismatch"


class PlanMismatch(PareError):
    """A method's plan and the model it produced disagree (block count, or MACs measured after the
    rewrite versus the plan that passed the budget check): a bug in the method, not in the request."""

    code = "plan_mismatch"


class InvalidArtifact(PareError):
    """A compressed-model artifact that the loader will not build: wrong or missing format version,
    or a manifest naming a module, attribute, kind or value outside its architecture's ArchSpec."""

    code = "invalid_artifact"

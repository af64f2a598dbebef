"""Service-level errors; app.api.problems maps these and core.errors.PareError to HTTP in one place."""

from __future__ import annotations


class ServiceError(Exception):
    """Base: an HTTP status, a stable code, and optionally the offending request field."""

    status = 400
    code = "bad_request"
    title = "Bad request"

    def __init__(
        self, detail: str, *, field: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        self.headers = headers or {}


class Unauthorized(ServiceError):
    status, code, title = 401, "unauthorized", "Missing or invalid API key"


class NotFound(ServiceError):
    status, code, title = 404, "not_found", "Not found"


class ArtifactsDeleted(NotFound):
    """The job succeeded, but its artifacts were deleted since (DELETE, or the retention setting)."""

    code, title = "artifacts_deleted", "Artifacts deleted"


class Conflict(ServiceError):
    status, code, title = 409, "conflict", "Conflict"


class IdempotencyInFlight(ServiceError):
    status, code, title = 409, "idempotency_in_flight", "A request with this Idempotency-Key is in flight"


class IdempotencyMismatch(ServiceError):
    status, code, title = 422, "idempotency_key_reused", "Idempotency-Key reused with another body"


class InvalidRequest(ServiceError):
    status, code, title = 422, "invalid_request", "Invalid request"


class MetricNotEvaluated(InvalidRequest):
    """A quality target names a metric no evaluation task of the job measures."""

    code, title = "metric_not_evaluated", "The target's metric is not evaluated"


class PayloadTooLarge(ServiceError):
    status, code, title = 413, "payload_too_large", "Payload too large"


class RangeNotSatisfiable(ServiceError):
    status, code, title = 416, "range_not_satisfiable", "Range not satisfiable"


class CorruptArtifact(ServiceError):
    """The stored bytes no longer match the sha256 recorded when the job succeeded: the record and
    the storage conflict, and retrying will not help (an operator restores or deletes it)."""

    status, code, title = 409, "artifact_corrupt", "Stored artifact failed its checksum"


class Unavailable(ServiceError):
    status, code, title = 503, "service_unavailable", "Service unavailable"


class NotImplementedYet(ServiceError):
    status, code, title = 501, "not_implemented", "Not implemented"

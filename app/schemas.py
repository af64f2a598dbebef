"""Request and response schemas of the HTTP API (a leaf module: pydantic only, workers may import it)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from core import methods as catalogue
from core import targets
from core.errors import InvalidSpec

EVAL_TASKS = ("perplexity", "classification", "sts", "latency")
JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelling", "cancelled"]
WebhookEvent = Literal["succeeded", "failed", "cancelled"]
WEBHOOK_EVENTS: tuple[WebhookEvent, ...] = ("succeeded", "failed", "cancelled")
# No control characters (NUL included): names and ids in requests are printable text.
PRINTABLE_PATTERN = r"^[^\x00-\x1f\x7f]*$"
MAX_SEED = 2**32 - 1  # numpy's and torch's seeds take 32 bits; larger values failed jobs


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelRef(Strict):
    id: str = Field(
        min_length=1,
        max_length=96,
        pattern=PRINTABLE_PATTERN,
        description="A Hugging Face hub id (org/name) found in the service's model cache, never a path.",
        examples=["sentence-transformers/all-MiniLM-L6-v2"],
    )
    revision: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        pattern=PRINTABLE_PATTERN,
        description="A commit sha, a branch or a tag name (git's ref rules; never a path). Default main.",
    )


def _method_names(schema: dict[str, Any]) -> None:
    schema["enum"] = list(catalogue.names())  # read when the OpenAPI document is built


class MethodSpec(Strict):
    """A method of the catalogue (`GET /v1/capabilities` lists them with their parameters)."""

    name: str = Field(json_schema_extra=_method_names, examples=["id"])
    params: dict[str, Any] = Field(
        default_factory=dict, description="The method's parameters; validated against its schema at submit."
    )

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        if name not in catalogue.names():
            raise ValueError(f"unknown method {name!r}; available: {', '.join(catalogue.names())}")
        return name

    def validated_params(self) -> catalogue.MethodParams:
        """`params` as the method's parameter model (InvalidSpec with the offending field)."""
        return catalogue.get(self.name).validate_params(self.params)


class RatioTarget(Strict):
    """One MAC ratio (what an estimate plans for)."""

    mac_ratio: float = Field(gt=0, le=1, description="Kept fraction of the blocks' MACs, in (0, 1].")
    reference_seq_len: int | None = Field(default=None, gt=0, le=65536)


class TargetSpec(Strict):
    """Exactly one of: `mac_ratio`; `mac_ratios` (a sweep: one model per ratio); `max_drop` or
    `max_ratio` with `metric` (a search for the smallest model within that bound of dense)."""

    mac_ratio: float | None = Field(
        default=None, gt=0, le=1, description="Kept fraction of the blocks' MACs, in (0, 1]."
    )
    mac_ratios: list[Annotated[float, Field(gt=0, le=1)]] | None = Field(
        default=None, min_length=1, max_length=targets.MAX_SWEEP, json_schema_extra={"uniqueItems": True},
        description="A sweep: one compressed model per ratio, each in its own artifact folder (mac-0.7/).",
    )
    max_drop: float | None = Field(
        default=None, ge=0, le=1e6, description="Largest absolute loss of `metric` against the dense model."
    )
    max_ratio: float | None = Field(
        default=None, ge=1, le=1e6, description="Largest ratio worse/dense of `metric` (e.g. perplexity 1.1)."
    )
    metric: Literal["spearman", "accuracy", "macro_f1", "perplexity", "token_accuracy"] | None = None
    reference_seq_len: int | None = Field(default=None, gt=0, le=65536)

    @model_serializer(mode="wrap")
    def _given_fields(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Only the fields of the form given: a target echoed back matches one form of the schema."""
        return {k: v for k, v in handler(self).items() if v is not None}

    @model_validator(mode="after")
    def _one_form(self) -> TargetSpec:
        try:
            targets.parse(self.model_dump(exclude_none=True))
        except InvalidSpec as exc:
            raise ValueError(str(exc)) from exc
        return self

    def parsed(self) -> targets.Targets:
        return targets.parse(self.model_dump(exclude_none=True))

    def first_ratio(self) -> float:
        """The ratio a single-target step (estimate, the engine's spec) is built for."""
        parsed = self.parsed()
        return parsed.ratios[0] if parsed.ratios else targets.SEARCH_CEILING


class CalibrationSpec(Strict):
    dataset: str = Field(
        min_length=1,
        max_length=200,
        pattern=PRINTABLE_PATTERN,
        description="An uploaded dataset id or a hub dataset id.",
    )
    split: str = Field(default="train", min_length=1, max_length=100, pattern=PRINTABLE_PATTERN)
    text_column: str | None = Field(default=None, min_length=1, max_length=200, pattern=PRINTABLE_PATTERN)
    num_samples: int = Field(default=128, gt=0, le=1_000_000)
    max_seq_length: int = Field(default=128, gt=0, le=1_000_000)
    seed: int = Field(default=0, ge=0, le=MAX_SEED)


class EvaluationSpec(BaseModel):
    """One evaluation task; keys other than these (e.g. `seq_len`) are passed to the task as options."""

    model_config = ConfigDict(extra="allow")

    task: Literal["perplexity", "classification", "sts", "latency"]
    dataset: str | None = Field(default=None, min_length=1, max_length=200, pattern=PRINTABLE_PATTERN)
    split: str | None = Field(default=None, min_length=1, max_length=100, pattern=PRINTABLE_PATTERN)
    text_column: str | None = Field(default=None, min_length=1, max_length=200, pattern=PRINTABLE_PATTERN)
    options: dict[str, Any] = Field(default_factory=dict)

    def all_options(self) -> dict[str, Any]:
        """`options` merged with the extra keys."""
        return {**(self.model_extra or {}), **self.options}


class WebhookSpec(Strict):
    url: AnyHttpUrl
    events: list[WebhookEvent] = Field(default_factory=lambda: list(WEBHOOK_EVENTS))


class JobRequest(Strict):
    model: ModelRef
    method: MethodSpec
    target: TargetSpec
    calibration: CalibrationSpec
    evaluation: list[EvaluationSpec] = Field(default_factory=list, max_length=16)
    webhook: WebhookSpec | None = None


class Progress(BaseModel):
    stage: str | None = None
    block: int | None = None
    total_blocks: int | None = None
    percent: float = 0.0
    eta_seconds: float | None = None


class JobError(BaseModel):
    code: str
    message: str


class Job(BaseModel):
    """A job: the echoed request (model, method, target, calibration, evaluation, webhook) and its state."""

    object: Literal["job"] = "job"
    id: str
    status: JobStatus
    model: ModelRef
    method: MethodSpec
    target: TargetSpec
    calibration: CalibrationSpec
    evaluation: list[EvaluationSpec]
    webhook: WebhookSpec | None = None
    attempt: int
    max_attempts: int
    resolved: dict[str, Any] | None = None
    progress: Progress
    results: dict[str, Any] | None = None
    error: JobError | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    artifacts_deleted_at: datetime | None = None


class JobList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Job]
    has_more: bool


class JobEvent(BaseModel):
    object: Literal["job.event"] = "job.event"
    seq: int
    type: str
    created_at: datetime
    data: dict[str, Any]


class JobEventList(BaseModel):
    object: Literal["list"] = "list"
    data: list[JobEvent]
    has_more: bool


class ArtifactOut(BaseModel):
    object: Literal["artifact"] = "artifact"
    name: str
    size_bytes: int
    sha256: str
    content_type: str
    download_url: str


class DatasetOut(BaseModel):
    object: Literal["dataset"] = "dataset"
    id: str
    filename: str
    size_bytes: int
    sha256: str
    format: str
    created_at: datetime


class EstimateRequest(Strict):
    model: ModelRef
    method: MethodSpec = Field(default_factory=lambda: MethodSpec(name="id"))
    target: RatioTarget


class Problem(BaseModel):
    """RFC 9457 problem details, plus the stable `code` and the offending `field`."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    field: str | None = None
    errors: list[dict[str, Any]] | None = None

"""Options of the evaluation tasks: torch-free, so the API checks them at submit and the workers
parse them the same way (unknown keys, wrong types and out-of-range values are InvalidSpec)."""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.errors import InvalidSpec

Options = TypeVar("Options", bound="TaskOptions")
MAX_BATCH = 4096
MAX_LENGTH = 1 << 20


class TaskOptions(BaseModel):
    """Base of per-task options: unknown keys are an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @classmethod
    def parse(cls: type[Options], task: str, options: dict[str, Any] | None) -> Options:
        clean = {k: v for k, v in (options or {}).items() if v is not None}
        try:
            return cls(**clean)
        except ValidationError as exc:
            allowed = ", ".join(cls.model_fields)
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise InvalidSpec(f"bad options for task {task!r}: {problems} (allowed: {allowed})") from exc


class PartOptions(TaskOptions):
    """Which rows (windows, for perplexity) a task scores: all, or one side of a fixed split.

    The split is a seeded permutation of the row indices: `search` is its first `search_fraction`,
    `report` the rest. A quality-target search walks on `search` and reports on `report`, so the
    final figure comes from rows the search never saw.
    """

    part: Literal["all", "search", "report"] = "all"
    search_fraction: float = Field(0.3, gt=0, lt=1)


def part_indices(count: int, opts: PartOptions, seed: int = 0) -> list[int]:
    """The indices (ascending) of `opts.part` among `count` rows; both parts are non-empty when
    count ≥ 2."""
    import random

    if opts.part == "all" or count < 2:
        return list(range(count))
    order = list(range(count))
    random.Random(seed).shuffle(order)
    cut = min(max(1, round(opts.search_fraction * count)), count - 1)
    chosen = order[:cut] if opts.part == "search" else order[cut:]
    return sorted(chosen)


class ClassificationOptions(PartOptions):
    batch_size: int = Field(32, ge=1, le=MAX_BATCH)
    max_length: int = Field(128, ge=2, le=MAX_LENGTH)


class StsOptions(PartOptions):
    batch_size: int = Field(32, ge=1, le=MAX_BATCH)
    max_length: int = Field(256, ge=2, le=MAX_LENGTH)


class PerplexityOptions(PartOptions):
    seq_len: int = Field(512, ge=2, le=MAX_LENGTH)
    stride: int | None = Field(None, ge=1, le=MAX_LENGTH)
    max_tokens: int | None = Field(None, ge=2, le=1 << 40)
    batch_size: int = Field(4, ge=1, le=MAX_BATCH)
    logits_chunk: int = Field(128, ge=1, le=MAX_LENGTH)


class LatencyOptions(TaskOptions):
    batch_size: int = Field(8, ge=1, le=MAX_BATCH)
    seq_len: int = Field(128, ge=1, le=MAX_LENGTH)
    warmup: int = Field(3, ge=0, le=10_000)
    iters: int = Field(20, ge=1, le=100_000)
    min_seconds: float = Field(2.0, ge=0, le=3600)
    max_iters: int = Field(1000, ge=1, le=1_000_000)
    seed: int = Field(0, ge=0, le=2**32 - 1)


OPTIONS: dict[str, type[TaskOptions]] = {
    "classification": ClassificationOptions,
    "sts": StsOptions,
    "perplexity": PerplexityOptions,
    "latency": LatencyOptions,
}


def parse_options(task: str, options: dict[str, Any] | None) -> TaskOptions:
    """The options of `task` as its model; InvalidSpec for an unknown task or bad options."""
    if task not in OPTIONS:
        raise InvalidSpec(f"unknown evaluation task {task!r}; available: {', '.join(OPTIONS)}")
    return OPTIONS[task].parse(task, options)


def part_protocol(opts: PartOptions) -> dict[str, Any]:
    """What a task's protocol says about the rows it scored (nothing when it scored all)."""
    if opts.part == "all":
        return {}
    return {"part": opts.part, "search_fraction": opts.search_fraction, "split_seed": 0}

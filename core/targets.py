"""What a job aims at: one MAC ratio, several (a sweep), or a quality bound to search for.

    {"mac_ratio": 0.5}                               one model
    {"mac_ratios": [0.9, 0.7, 0.5]}                  a sweep: one model per ratio, one job
    {"max_drop": 0.01, "metric": "spearman"}         the smallest model losing at most 0.01
    {"max_ratio": 1.25, "metric": "perplexity"}      the smallest model within 1.25x the dense value

Torch-free: the API validates targets at submit with the same rules the worker runs.

The search (`search`) walks the MAC ratio on a held-back part of the evaluation data (the rows
the final figures are reported on are never seen): it first tries the largest ratio it would
return (`SEARCH_CEILING`; failing there, the target is unreachable and the job says so), then
the least (`floor`), then bisects between the smallest ratio that met the bound and the largest
that missed until they are within `resolution`. It returns the smallest walked ratio that met
the bound, so the answer is never more than `resolution` above the boundary the walk found.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core.errors import BudgetInfeasible, InvalidSpec

# Metrics where lower is better; every other metric (spearman, accuracy, macro_f1, ...) is
# higher-is-better.
LOWER_IS_BETTER = frozenset({"perplexity", "mean_nll"})
# The task whose result holds each metric a quality target may name
METRIC_TASKS = {
    "spearman": "sts",
    "accuracy": "classification",
    "macro_f1": "classification",
    "perplexity": "perplexity",
    "token_accuracy": "perplexity",
}
SEARCH_CEILING = 0.95  # the largest ratio a search returns: above it compression is not worth a job
SEARCH_RESOLUTION = 0.025
SEARCH_FLOOR = 0.1
MAX_SWEEP = 16


@dataclass(frozen=True)
class QualityTarget:
    """A bound on one metric relative to the dense model: an absolute drop or a ratio."""

    metric: str
    max_drop: float | None = None
    max_ratio: float | None = None

    @property
    def task(self) -> str:
        return METRIC_TASKS[self.metric]

    @property
    def lower_is_better(self) -> bool:
        return self.metric in LOWER_IS_BETTER

    def loss(self, dense: float, value: float) -> float:
        """How much worse `value` is than `dense` in this target's terms (≤ bound: met)."""
        if self.max_drop is not None:
            return value - dense if self.lower_is_better else dense - value
        worse, better = (value, dense) if self.lower_is_better else (dense, value)
        return worse / better if better > 0 else math.inf

    @property
    def bound(self) -> float:
        return self.max_drop if self.max_drop is not None else self.max_ratio  # type: ignore[return-value]

    def meets(self, dense: float, value: float) -> bool:
        return math.isfinite(value) and self.loss(dense, value) <= self.bound + 1e-12

    def describe(self) -> dict[str, Any]:
        key = "max_drop" if self.max_drop is not None else "max_ratio"
        return {"metric": self.metric, key: self.bound}


@dataclass(frozen=True)
class Targets:
    """The parsed target of a job: `ratios` (one or several) or `quality`."""

    ratios: tuple[float, ...] = ()
    quality: QualityTarget | None = None
    reference_seq_len: int | None = None

    @property
    def kind(self) -> str:
        if self.quality is not None:
            return "quality"
        return "sweep" if len(self.ratios) > 1 else "ratio"


def parse(target: dict[str, Any], *, field_name: str = "target") -> Targets:
    """A job's `target` object as Targets; InvalidSpec (naming the field) when it is not one of
    the four forms, a ratio is outside (0, 1], a sweep repeats a ratio or the metric is unknown."""
    keys = {k for k, v in target.items() if v is not None} - {"reference_seq_len"}
    forms = [{"mac_ratio"}, {"mac_ratios"}, {"max_drop", "metric"}, {"max_ratio", "metric"}]
    if keys not in forms:
        raise InvalidSpec(
            "target is one of {mac_ratio}, {mac_ratios: [...]}, {max_drop, metric} or {max_ratio, metric}; "
            f"got {sorted(keys) or 'nothing'}",
            field=field_name,
        )
    seq = target.get("reference_seq_len")
    if "mac_ratio" in keys:
        return Targets((_ratio(target["mac_ratio"], f"{field_name}.mac_ratio"),), reference_seq_len=seq)
    if "mac_ratios" in keys:
        ratios = target["mac_ratios"]
        if not isinstance(ratios, list | tuple) or not 1 <= len(ratios) <= MAX_SWEEP:
            raise InvalidSpec(
                f"mac_ratios is a list of 1 to {MAX_SWEEP} ratios", field=f"{field_name}.mac_ratios"
            )
        parsed = tuple(_ratio(r, f"{field_name}.mac_ratios") for r in ratios)
        if len({label(r) for r in parsed}) != len(parsed):
            raise InvalidSpec("mac_ratios repeats a ratio", field=f"{field_name}.mac_ratios")
        return Targets(parsed, reference_seq_len=seq)
    metric = target["metric"]
    if metric not in METRIC_TASKS:
        raise InvalidSpec(
            f"unknown metric {metric!r}; one of {', '.join(METRIC_TASKS)}", field=f"{field_name}.metric"
        )
    if "max_drop" in keys:
        drop = _number(target["max_drop"], f"{field_name}.max_drop")
        if drop < 0:
            raise InvalidSpec("max_drop is ≥ 0", field=f"{field_name}.max_drop")
        return Targets(quality=QualityTarget(metric, max_drop=drop), reference_seq_len=seq)
    ratio = _number(target["max_ratio"], f"{field_name}.max_ratio")
    if ratio < 1:
        raise InvalidSpec("max_ratio is ≥ 1 (worse / dense)", field=f"{field_name}.max_ratio")
    return Targets(quality=QualityTarget(metric, max_ratio=ratio), reference_seq_len=seq)


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidSpec(f"{value!r} is not a finite number", field=where)
    return float(value)


def _ratio(value: Any, where: str) -> float:
    ratio = _number(value, where)
    if not 0 < ratio <= 1:
        raise InvalidSpec(f"a MAC ratio is in (0, 1], got {ratio}", field=where)
    return ratio


def label(ratio: float) -> str:
    """The artifact folder of one ratio of a sweep: mac-0.7, mac-0.725 (the shortest repr of the
    float, so distinct ratios never share a folder)."""
    return f"mac-{float(ratio)!r}"


@dataclass
class Step:
    """One point of a search: the ratio tried, the metric on the search rows, met or not."""

    mac_ratio: float
    value: float | None  # None: the method could not reach this ratio
    met: bool
    achieved: float | None = None  # the kept ratio the compression measured
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None and v != ""}


@dataclass
class SearchResult:
    steps: list[Step] = field(default_factory=list)
    chosen: float | None = None  # None: unreachable (even SEARCH_CEILING misses the bound)

    @property
    def reachable(self) -> bool:
        return self.chosen is not None


def search(
    try_ratio: Callable[[float], tuple[float, float]],
    meets: Callable[[float], bool],
    *,
    floor: float = SEARCH_FLOOR,
    ceiling: float = SEARCH_CEILING,
    resolution: float = SEARCH_RESOLUTION,
) -> SearchResult:
    """Find the smallest ratio in [floor, ceiling] whose model meets the bound (see the module).

    `try_ratio(r)` compresses to r and returns (metric value on the search rows, achieved ratio),
    raising BudgetInfeasible when the method cannot reach r; `meets(value)` tests the bound.
    """
    result = SearchResult()

    def attempt(ratio: float) -> bool:
        ratio = round(ratio, 4)
        try:
            value, achieved = try_ratio(ratio)
        except BudgetInfeasible as exc:
            result.steps.append(Step(ratio, None, False, note=str(exc)[:200]))
            return False
        if not math.isfinite(value):  # a diverged model (inf perplexity): missed, and JSON-safe
            result.steps.append(Step(ratio, None, False, achieved, note=f"the metric is {value}"))
            return False
        ok = meets(value)
        result.steps.append(Step(ratio, value, ok, achieved))
        return ok

    if not attempt(ceiling):
        return result
    good, bad = ceiling, None
    if floor < ceiling and attempt(floor):
        good = floor
    else:
        bad = floor
    while bad is not None and good - bad > resolution + 1e-9:
        mid = (good + bad) / 2
        if attempt(mid):
            good = mid
        else:
            bad = mid
    met = [s.mac_ratio for s in result.steps if s.met]
    result.chosen = min(met)
    return result

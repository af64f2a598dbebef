"""core.targets: the four target forms, the quality bound in both directions, and the search."""

from __future__ import annotations

import typing

import pytest

from core import targets
from core.errors import BudgetInfeasible, InvalidSpec


def test_the_four_forms_parse() -> None:
    assert targets.parse({"mac_ratio": 0.5}).kind == "ratio"
    sweep = targets.parse({"mac_ratios": [0.9, 0.7], "reference_seq_len": 64})
    assert sweep.kind == "sweep" and sweep.ratios == (0.9, 0.7) and sweep.reference_seq_len == 64
    drop = targets.parse({"max_drop": 0.01, "metric": "spearman"}).quality
    assert drop is not None and drop.task == "sts" and drop.bound == 0.01 and not drop.lower_is_better
    ratio = targets.parse({"max_ratio": 1.1, "metric": "perplexity"}).quality
    assert ratio is not None and ratio.task == "perplexity" and ratio.lower_is_better


@pytest.mark.parametrize(
    ("target", "field"),
    [
        ({}, "target"),
        ({"mac_ratio": 0.5, "mac_ratios": [0.5]}, "target"),
        ({"mac_ratio": 0.5, "max_drop": 0.1, "metric": "spearman"}, "target"),
        ({"max_drop": 0.1}, "target"),
        ({"mac_ratio": 1.5}, "target.mac_ratio"),
        ({"mac_ratio": float("nan")}, "target.mac_ratio"),
        ({"mac_ratio": True}, "target.mac_ratio"),
        ({"mac_ratios": []}, "target.mac_ratios"),
        ({"mac_ratios": [0.5, 0.5]}, "target.mac_ratios"),
        ({"mac_ratios": [0.1] * 17}, "target.mac_ratios"),
        ({"max_drop": -0.1, "metric": "spearman"}, "target.max_drop"),
        ({"max_ratio": 0.9, "metric": "perplexity"}, "target.max_ratio"),
        ({"max_ratio": 1.1, "metric": "bleu"}, "target.metric"),
    ],
)
def test_bad_targets_name_their_field(target: dict, field: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(InvalidSpec) as err:
        targets.parse(target)
    assert err.value.field == field


def test_the_bound_reads_each_metric_in_its_direction() -> None:
    spearman = targets.QualityTarget("spearman", max_drop=0.01)
    assert spearman.meets(0.86, 0.851) and not spearman.meets(0.86, 0.849) and spearman.meets(0.86, 0.9)
    ppl = targets.QualityTarget("perplexity", max_ratio=1.25)
    assert ppl.meets(20.0, 25.0) and not ppl.meets(20.0, 25.1) and ppl.meets(20.0, 19.0)
    assert not ppl.meets(20.0, float("inf")) and not ppl.meets(20.0, float("nan"))
    assert targets.QualityTarget("perplexity", max_drop=1.0).meets(20.0, 21.0)


def test_labels_are_distinct_for_distinct_ratios() -> None:
    assert targets.label(0.7) == "mac-0.7" and targets.label(0.725) == "mac-0.725"
    assert targets.label(0.5) != targets.label(0.50000001)


def _walk(boundary: float, **kwargs: float) -> targets.SearchResult:
    """A metric that meets the bound exactly at ratios ≥ boundary."""
    return targets.search(lambda r: (r, r), lambda value: value >= boundary, **kwargs)


@pytest.mark.parametrize("boundary", [0.1, 0.23, 0.5, 0.61, 0.9, 0.95])
def test_the_search_returns_the_smallest_walked_ratio_within_resolution(boundary: float) -> None:
    walk = _walk(boundary)
    met = [s.mac_ratio for s in walk.steps if s.met]
    assert walk.reachable and walk.chosen == min(met) and walk.chosen >= boundary
    assert walk.chosen - boundary <= targets.SEARCH_RESOLUTION + 1e-9
    assert walk.steps[0].mac_ratio == targets.SEARCH_CEILING and len(walk.steps) <= 8


def test_an_unreachable_bound_stops_after_the_ceiling() -> None:
    walk = _walk(0.97)
    assert not walk.reachable and walk.chosen is None and [s.mac_ratio for s in walk.steps] == [0.95]


def test_ratios_the_method_cannot_reach_count_as_missed() -> None:
    def try_ratio(r: float) -> tuple[float, float]:
        if r < 0.4:
            raise BudgetInfeasible("too small")
        return r, r

    walk = targets.search(try_ratio, lambda value: True)
    assert walk.chosen is not None and 0.4 <= walk.chosen <= 0.4 + targets.SEARCH_RESOLUTION
    assert any(s.value is None and "too small" in s.note for s in walk.steps)


def test_the_api_offers_exactly_the_metrics_a_target_may_name() -> None:
    from app.schemas import TargetSpec

    offered = typing.get_args(typing.get_args(TargetSpec.model_fields["metric"].annotation)[0])
    assert set(offered) == set(targets.METRIC_TASKS)


def test_a_diverged_step_is_missed_and_json_safe() -> None:
    import json

    walk = targets.search(lambda r: (float("inf") if r < 0.5 else r, r), lambda value: True)
    diverged = [s for s in walk.steps if "inf" in s.note]
    assert diverged and all(s.value is None and not s.met for s in diverged)
    json.dumps([s.as_dict() for s in walk.steps], allow_nan=False)

"""The one allocator over options: optimality against brute force, the budget, termination."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from core.errors import BudgetInfeasible
from workers.compression import budget
from workers.compression.budget import Option


def random_menus(seed: int, items: int, options: int, convex: bool) -> list[list[Option]]:
    rng = np.random.default_rng(seed)
    menus = []
    for _ in range(items):
        costs = np.sort(rng.choice(np.arange(1, 40), size=options, replace=False)).astype(float)
        if convex:  # error falls by less per MAC as the cost grows
            drops = np.sort(rng.random(options - 1))[::-1] * np.diff(costs)
            errors = np.concatenate([[drops.sum()], drops.sum() - np.cumsum(drops)])
        else:
            errors = np.sort(rng.random(options))[::-1]
        errors[-1] = 0.0
        menus.append([Option(c, float(e), (len(menus), k))
                      for k, (c, e) in enumerate(zip(costs, errors, strict=True))])
    return menus


def brute_force(menus: list[list[Option]], total: float) -> float:
    best = float("inf")
    for pick in itertools.product(*menus):
        if sum(o.macs for o in pick) <= total:
            best = min(best, sum(o.error for o in pick))
    return best


@pytest.mark.parametrize("seed", range(6))
def test_lagrangian_is_optimal_on_convex_menus_at_hull_budgets(seed: int) -> None:
    """On convex menus every budget the greedy path passes exactly is optimal; elsewhere it is never
    worse than one step of the path."""
    menus = random_menus(seed, items=4, options=5, convex=True)
    least = sum(m[0].macs for m in menus)
    most = sum(m[-1].macs for m in menus)
    for total in np.linspace(least, most, 9):
        chosen = budget.lagrangian(menus, float(total))
        assert sum(o.macs for o in chosen) <= total
        got, best = sum(o.error for o in chosen), brute_force(menus, float(total))
        step = max(m[k].error - m[k + 1].error for m in menus for k in range(len(m) - 1))
        assert best - 1e-12 <= got <= best + step + 1e-12


@pytest.mark.parametrize("seed", range(6))
def test_lagrangian_respects_the_budget_and_beats_every_uniform_choice(seed: int) -> None:
    menus = random_menus(seed, items=5, options=6, convex=False)
    total = 0.6 * sum(m[-1].macs for m in menus)
    chosen = budget.lagrangian(menus, total)
    assert sum(o.macs for o in chosen) <= total
    for k in range(6):  # the same position on every menu, where it fits
        uniform = [m[k] for m in menus]
        if sum(o.macs for o in uniform) <= total:
            assert sum(o.error for o in chosen) <= sum(o.error for o in uniform) + 1e-12


def test_slack_polish_lands_a_coarse_plan_near_the_budget() -> None:
    """Two coarse menus whose slope order stops far below the budget: pair moves land closer."""
    menus = [
        [Option(10, 1.0, "a0"), Option(50, 0.2, "a1"), Option(100, 0.0, "a2")],
        [Option(10, 1.0, "b0"), Option(25, 0.5, "b1"), Option(100, 0.0, "b2")],
    ]
    plain = budget.lagrangian(menus, 110.0)
    polished = budget.lagrangian(menus, 110.0, slack=1.0)
    assert sum(o.macs for o in polished) <= 110.0
    assert 110.0 - sum(o.macs for o in polished) <= 110.0 - sum(o.macs for o in plain)
    assert sum(o.macs for o in polished) == 110.0  # a2 + b0


def test_an_infeasible_budget_is_refused_by_either_rule() -> None:
    menus = random_menus(0, items=3, options=4, convex=True)
    least = sum(m[0].macs for m in menus)
    for rule in (budget.lagrangian, budget.threshold):
        with pytest.raises(BudgetInfeasible, match="cheapest plan"):
            rule(menus, least - 1)
        assert len(rule(menus, least)) == 3


def test_large_menus_terminate_and_spend_the_budget() -> None:
    """Hundreds of items with a thousand options each (SmolLM2-sized block low rank): no step cap,
    the plan spends the budget to within the smallest step."""
    rng = np.random.default_rng(1)
    menus = []
    for i in range(300):
        k = np.arange(0, 1001)
        energy = np.sort(rng.random(1000))[::-1]
        errors = np.concatenate([[1.0], 1.0 - np.cumsum(energy) / energy.sum()])
        menus.append([Option(float(7 * c + 3), float(max(e, 0.0)), (i, int(c)))
                      for c, e in zip(k, errors, strict=True)])
    total = 0.4 * sum(m[-1].macs for m in menus)
    chosen = budget.lagrangian(menus, total)
    assert total - 7 < sum(o.macs for o in chosen) <= total

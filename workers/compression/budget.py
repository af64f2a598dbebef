"""Splitting a global MAC budget across every compressible part of the model: one allocator over options.

Each part (a matrix of a factorising method; a block's neurons or heads for the structured
methods) is an *item* with a menu of `Option`s: what it would cost (MACs as executed) and its
error, in one currency for every method: the **relative output error on the calibration data**,
‖(W − Ŵ)·X‖² / ‖W·X‖² (for pruned units, the normalised residual of the consumer's input, which is
the same quantity for the interpolated consumer). Every menu holds a zero-error option (dense, or
every unit kept). The sum over items of the chosen costs must not exceed the budget.

Two rules choose one option per item:

- `lagrangian` (the factorising methods): minimise Σ error subject to Σ MACs ≤ budget, a
  multiple-choice knapsack, solved by the greedy on each menu's lower convex hull with a heap (the
  Lagrangian relaxation's path: upgrades in order of error removed per MAC added), then completed
  with off-hull options where a hull step no longer fits. Exact at every hull vertex the path
  passes; within one step of the optimum otherwise.
- `threshold` (STAT's rule, for `id` and `magnitude`): one global error threshold τ, in each menu
  the cheapest option whose error is ≤ τ; τ the smallest whose plan fits (bisection over the menus'
  own error values), then the same heap spends what is left on the next options, best error drop
  per MAC first.

Both terminate by construction (each heap entry moves one item forward along its menu) and raise
`BudgetInfeasible` when even the cheapest options exceed the budget.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.errors import BudgetInfeasible


@dataclass(frozen=True)
class Option:
    macs: float
    error: float
    choice: Any  # what the method builds for this option (a width, a LinearKind, …)


Menu = Sequence[Option]


@dataclass(frozen=True)
class Curve:
    """A structured component's error curve: candidate widths (increasing) and the error of each."""

    widths: np.ndarray
    errors: np.ndarray  # non-increasing, last = 0

    def menu(self, cost: Callable[[int], float]) -> list[Option]:
        return [Option(float(cost(int(w))), float(e), int(w))
                for w, e in zip(self.widths, self.errors, strict=True)]


def _pareto(menu: Menu) -> list[Option]:
    """Options sorted by cost, each strictly better in error than every cheaper one."""
    out: list[Option] = []
    for option in sorted(menu, key=lambda o: (o.macs, o.error)):
        if not out or option.error < out[-1].error:
            out.append(option)
    return out


def _hull(front: list[Option]) -> list[int]:
    """Indices of the lower convex hull of a Pareto front (cost ascending, error descending)."""
    hull: list[int] = []
    for k, p in enumerate(front):
        while len(hull) >= 2:
            a, b = front[hull[-2]], front[hull[-1]]
            # b is above the segment a→p: drop it
            if (b.error - a.error) * (p.macs - a.macs) >= (p.error - a.error) * (b.macs - a.macs):
                hull.pop()
            else:
                break
        hull.append(k)
    return hull


def _infeasible(fronts: list[list[Option]], budget: float) -> None:
    least = sum(f[0].macs for f in fronts)
    if least > budget * (1 + 1e-9):  # float slack: a plan computed to equal the budget fits
        raise BudgetInfeasible(
            f"even the cheapest plan ({least:.4g} MACs) exceeds the budget of {budget:.4g} MACs",
            field="target.mac_ratio",
        )


def _slope(a: Option, b: Option) -> float:
    return (a.error - b.error) / max(b.macs - a.macs, 1e-12)


def _spend(fronts: list[list[Option]], chosen: list[int], budget: float, *, hull: bool) -> None:
    """Move items forward along their fronts while the budget allows, best error drop per MAC first.

    With `hull`, the candidate step of an item is to its next hull vertex, and when that no longer
    fits, to the best-slope option before it that does; without, always the next option.
    """
    spent = sum(f[c].macs for f, c in zip(fronts, chosen, strict=True))
    steps = [_hull(f) if hull else list(range(len(f))) for f in fronts]
    pos = [0] * len(fronts)  # per item: index into its steps of the first one beyond `chosen`
    heap: list[tuple[float, int, int]] = []

    def push(item: int) -> None:
        front, at, ahead = fronts[item], chosen[item], steps[item]
        while pos[item] < len(ahead) and ahead[pos[item]] <= at:
            pos[item] += 1
        if pos[item] == len(ahead):
            return
        nxt = ahead[pos[item]]
        if spent + front[nxt].macs - front[at].macs > budget:
            fits = [k for k in range(at + 1, nxt) if spent + front[k].macs - front[at].macs <= budget]
            if not fits:
                return
            nxt = max(fits, key=lambda k: _slope(front[at], front[k]))
        heapq.heappush(heap, (-_slope(front[at], front[nxt]), item, nxt))

    for item in range(len(fronts)):
        push(item)
    while heap:
        _, item, nxt = heapq.heappop(heap)
        extra = fronts[item][nxt].macs - fronts[item][chosen[item]].macs
        if spent + extra > budget:
            push(item)  # the budget moved since this entry was pushed: look again
            continue
        chosen[item], spent = nxt, spent + extra
        push(item)
    _exchange(fronts, chosen, budget - spent)


def _left(fronts: list[list[Option]], chosen: list[int], budget: float) -> float:
    return budget - sum(f[c].macs for f, c in zip(fronts, chosen, strict=True))


def _polish(fronts: list[list[Option]], chosen: list[int], budget: float, slack: float) -> None:
    """While more than `slack` of the budget is unspent: the pair move (one item one option down,
    another up to any option that then fits) that leaves the least unspent, provided it leaves less
    than before; ties broken by the error it adds. For menus too coarse to land near the budget."""
    for _ in range(4 * len(fronts)):
        left = _left(fronts, chosen, budget)
        if left <= slack:
            return
        best: tuple[float, float, int, int, int, int] | None = None
        for a, fa in enumerate(fronts):
            for ka in range(chosen[a]):
                freed = fa[chosen[a]].macs - fa[ka].macs
                for b, fb in enumerate(fronts):
                    if b == a:
                        continue
                    for kb in range(chosen[b] + 1, len(fb)):
                        rest = left + freed - (fb[kb].macs - fb[chosen[b]].macs)
                        if rest < 0:
                            break
                        if rest >= left:
                            continue
                        cost = (fa[ka].error - fa[chosen[a]].error) + (fb[kb].error - fb[chosen[b]].error)
                        key = (max(rest, slack), cost, a, ka, b, kb)
                        if best is None or key[:2] < best[:2]:
                            best = key
        if best is None:
            return
        _, _, a, ka, b, kb = best
        chosen[a], chosen[b] = ka, kb


def _exchange(fronts: list[list[Option]], chosen: list[int], left: float) -> None:
    """Spend what the slope order left over: repeatedly take the single move (any option of any item)
    that fits in the remainder and removes the most error. Coarse menus (tensor-train bonds) leave
    gaps that no per-MAC step fits, but a larger jump elsewhere often does."""
    while True:
        best: tuple[float, int, int, float] | None = None
        for item, front in enumerate(fronts):
            at = front[chosen[item]]
            for k in range(chosen[item] + 1, len(front)):
                extra = front[k].macs - at.macs
                if extra > left:
                    break
                gain = at.error - front[k].error
                if best is None or gain > best[0]:
                    best = (gain, item, k, extra)
        if best is None or best[0] <= 0:
            return
        _, item, k, extra = best
        chosen[item], left = k, left - extra


def _chosen(fronts: list[list[Option]], chosen: list[int]) -> list[Option]:
    return [f[c] for f, c in zip(fronts, chosen, strict=True)]


def lagrangian(menus: Sequence[Menu], budget: float, slack: float = 0.0) -> list[Option]:
    """One option per menu: least total error with total MACs ≤ budget (see the module docstring).
    With `slack`, coarse menus that leave more than that unspent are polished by pair moves."""
    fronts = [_pareto(m) for m in menus]
    _infeasible(fronts, budget)
    chosen = [0] * len(fronts)
    _spend(fronts, chosen, budget, hull=True)
    if slack > 0:
        _polish(fronts, chosen, budget, slack)
    return _chosen(fronts, chosen)


def threshold(menus: Sequence[Menu], budget: float) -> list[Option]:
    """STAT's rule: the cheapest option with error ≤ τ in every menu, τ the least that fits, then filled."""
    fronts = [_pareto(m) for m in menus]
    _infeasible(fronts, budget)
    errors = np.array([o.error for f in fronts for o in f] + [0.0])
    taus = np.unique(np.concatenate([errors, [max(1.0, float(errors.max()))]]))

    def at(tau: float) -> list[int]:
        return [next((k for k, o in enumerate(f) if o.error <= tau), len(f) - 1) for f in fronts]

    def cost(idx: list[int]) -> float:
        return sum(f[k].macs for f, k in zip(fronts, idx, strict=True))

    lo, hi = 0, len(taus) - 1
    if cost(at(float(taus[hi]))) > budget:  # the largest τ is the cheapest plan
        lo = hi = len(taus) - 1
        chosen = [0] * len(fronts)
    else:
        while lo < hi:
            mid = (lo + hi) // 2
            if cost(at(float(taus[mid]))) <= budget:
                hi = mid
            else:
                lo = mid + 1
        chosen = at(float(taus[lo]))
    _spend(fronts, chosen, budget, hull=False)
    return _chosen(fronts, chosen)

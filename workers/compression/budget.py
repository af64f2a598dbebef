"""Splitting a global MAC budget across blocks and components.

Each compressible component (a layer's neurons, its heads, a factorised matrix) offers an
error curve: candidate widths (increasing) and the normalised error of each (non-increasing,
0 at full width). One global threshold τ picks, in every curve, the smallest width whose
error is ≤ τ (STAT's global threshold on normalised error signals); τ is the smallest value
whose plan fits the budget, found by bisection over the curves' own error values, so the
plan lands on the budget up to one unit. A final greedy fill spends what is left on the units
that reduce error most per MAC.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from core.errors import BudgetInfeasible


@dataclass(frozen=True)
class Curve:
    widths: np.ndarray  # increasing candidate widths; the last is the full width
    errors: np.ndarray  # normalised error at each width, non-increasing, last = 0

    def index_at(self, tau: float) -> int:
        """Index of the smallest width whose error is ≤ τ."""
        below = np.nonzero(self.errors <= tau)[0]
        return int(below[0]) if below.size else len(self.widths) - 1


Plan = list[dict[str, int]]  # per block: component -> width
CostFn = Callable[[int, dict[str, int]], float]  # (block index, widths) -> MACs of that block


def _plan_at(curves: Sequence[dict[str, Curve]], tau: float) -> list[dict[str, int]]:
    return [{name: c.index_at(tau) for name, c in block.items()} for block in curves]


def _block_widths(block: dict[str, Curve], idx: dict[str, int]) -> dict[str, int]:
    return {n: int(block[n].widths[i]) for n, i in idx.items()}


def _widths(curves: Sequence[dict[str, Curve]], idx: list[dict[str, int]]) -> Plan:
    return [_block_widths(block, b) for block, b in zip(curves, idx, strict=True)]


def _cost(curves: Sequence[dict[str, Curve]], idx: list[dict[str, int]], cost: CostFn) -> float:
    return sum(cost(i, w) for i, w in enumerate(_widths(curves, idx)))


def allocate_threshold(curves: Sequence[dict[str, Curve]], cost: CostFn, budget: float) -> Plan:
    """The plan of the smallest global threshold whose total cost is ≤ budget, then filled."""
    taus = np.unique(np.concatenate([c.errors for block in curves for c in block.values()] + [[0.0, 1.0]]))
    lo, hi = 0, len(taus) - 1  # cost(taus[hi]) is the cheapest plan
    if _cost(curves, _plan_at(curves, float(taus[hi])), cost) > budget:
        raise BudgetInfeasible(
            f"even the narrowest plan exceeds the budget of {budget:.4g} MACs", field="target.mac_ratio"
        )
    while lo < hi:
        mid = (lo + hi) // 2
        if _cost(curves, _plan_at(curves, float(taus[mid])), cost) <= budget:
            hi = mid
        else:
            lo = mid + 1
    idx = _plan_at(curves, float(taus[lo]))
    _fill(curves, idx, cost, budget)
    return _widths(curves, idx)


def _fill(curves: Sequence[dict[str, Curve]], idx: list[dict[str, int]], cost: CostFn, budget: float) -> None:
    """Greedily widen components while the budget allows: best error drop per added MAC first."""
    spent = _cost(curves, idx, cost)
    for _ in range(100_000):
        best: tuple[float, int, str, float] | None = None
        for b, block in enumerate(curves):
            current = _block_widths(block, idx[b])
            base = cost(b, current)
            for name, curve in block.items():
                i = idx[b][name]
                if i + 1 >= len(curve.widths):
                    continue
                extra = cost(b, {**current, name: int(curve.widths[i + 1])}) - base
                if spent + extra > budget:
                    continue
                gain = (curve.errors[i] - curve.errors[i + 1]) / max(extra, 1e-9)
                if best is None or gain > best[0]:
                    best = (gain, b, name, extra)
        if best is None:
            return
        _, b, name, extra = best
        idx[b][name] += 1
        spent += extra


def allocate_uniform(num_blocks: int, widths: dict[str, int]) -> Plan:
    return [dict(widths) for _ in range(num_blocks)]

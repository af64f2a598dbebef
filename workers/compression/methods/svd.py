"""`svd`: every block Linear factorised into two Linears at a rank chosen under the budget.

`activation_aware: true` (default) whitens with the Cholesky factor of the calibration
inputs' Gram (SVD-LLM); `false` is plain truncated SVD and needs no data. Ranks are
allocated globally by error per MAC: each rank-1 term's share of its matrix's (whitened)
energy divided by the MACs it costs, L·(m+n); one threshold over all terms. A matrix whose
rank would reach m·n/(m+n) stays dense (factorising it would cost more than it saves).
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
from torch import nn

from core.macs import BlockShape, block_macs, dense_shape, max_useful_rank
from core.methods import SVDParams
from workers.compression import budget, lowrank
from workers.compression.adapters import linear_dims
from workers.compression.calibration import BlockStats
from workers.compression.methods.base import Method


class SVDMethod(Method):
    name = "svd"
    Params = SVDParams
    params: SVDParams

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.curves: dict[int, dict[str, budget.Curve]] = {}

    @property
    def needs_data(self) -> bool:
        return self.params.activation_aware

    @property
    def needs_planning_pass(self) -> bool:
        return self.params.activation_aware and self.params.allocation == "global"

    def observed(self, layer: nn.Module) -> list[tuple[str, nn.Module]]:
        a = self.adapter
        return [(n, a.linear(layer, n)) for n in a.spec.observed_inputs]  # one Gram per distinct input

    def _spectrum(self, layer: nn.Module, name: str, stats: BlockStats | None) -> lowrank.Spectrum:
        shared = self.adapter.spec.input_of(name)
        gram = stats.grams[shared].mean() if stats is not None and self.needs_data else None
        return lowrank.spectrum(self.adapter.weight(layer, name), gram, self.params.damping)

    def observe_plan(self, index: int, layer: nn.Module, stats: BlockStats) -> None:
        self.curves[index] = self._curves(layer, stats)

    def _curves(self, layer: nn.Module, stats: BlockStats | None) -> dict[str, budget.Curve]:
        curves = {}
        for name in self.adapter.spec.linears:
            m, n, _ = linear_dims(self.adapter.linear(layer, name))
            r_max = max_useful_rank(m, n)
            gain = (self._spectrum(layer, name, stats).relative_energy / (m + n)).cpu().numpy()
            widths = np.append(np.arange(1, r_max + 1), min(m, n))
            errors = np.append(gain[1 : r_max + 1], 0.0)  # the gain of the first term left out
            curves[name] = budget.Curve(widths, np.minimum.accumulate(errors))
        return curves

    def _shape(self, widths: dict[str, int]) -> BlockShape:
        dense = dense_shape(self.geometry)
        ranks = {}
        for name, (m, n) in self._dims().items():
            if widths.get(name, min(m, n)) <= max_useful_rank(m, n):
                ranks[name] = widths[name]
        return dense.with_ranks(ranks)

    def _dims(self) -> dict[str, tuple[int, int]]:
        layer = self.adapter.layers[0]
        return {name: linear_dims(self.adapter.linear(layer, name))[:2] for name in self.adapter.spec.linears}

    def plan(self, mac_target: float) -> list[BlockShape]:
        g = self.geometry
        total = mac_target * g.num_layers * block_macs(g, dense_shape(g), self.seq_len)
        if self.params.allocation == "uniform":
            return [self._uniform(total / g.num_layers)] * g.num_layers
        layers = self.adapter.layers
        curves = [self.curves.get(i) or self._curves(layers[i], None) for i in range(g.num_layers)]
        cost = lambda _i, widths: block_macs(g, self._shape(widths), self.seq_len)  # noqa: E731
        return [self._shape(w) for w in budget.allocate_threshold(curves, cost, total)]

    def _uniform(self, block_budget: float) -> BlockShape:
        """Every matrix at the same fraction c of its break-even rank m·n/(m+n), c by bisection."""
        dims, lo, hi = self._dims(), 0.0, 1.0
        for _ in range(50):
            c = (lo + hi) / 2
            widths = {k: max(1, int(c * m * n / (m + n))) for k, (m, n) in dims.items()}
            if block_macs(self.geometry, self._shape(widths), self.seq_len) <= block_budget:
                lo = c
            else:
                hi = c
        return self._shape({k: max(1, int(lo * m * n / (m + n))) for k, (m, n) in dims.items()})

    def compress_block(
        self, index: int, layer: nn.Module, stats: BlockStats, shape: BlockShape
    ) -> dict[str, Any]:
        report: dict[str, Any] = {"index": index, "ranks": dict(shape.ranks)}
        errors = {}
        for name, rank in shape.ranks.items():
            module = self.adapter.linear(layer, name)
            spec = self._spectrum(layer, name, stats)
            errors[name] = float(spec.relative_energy[rank:].sum())
            dense = cast(nn.Linear, module)
            pair = lowrank.factorised(spec, rank, dense.bias, dense.weight.dtype)
            self.adapter.set_linear(layer, name, pair)
        report["relative_error"] = errors
        return report

"""`svd`: every block Linear factorised into two Linears at a rank chosen under the budget.

`activation_aware: true` (default) whitens with the Cholesky factor of the calibration
inputs' Gram (SVD-LLM), which minimises the output error ‖(W − Ŵ)·X‖ on the calibration data;
`false` is plain truncated SVD (‖W − Ŵ‖_F) and needs no data. Global allocation (default):
every rank of every matrix is an option whose error is the share of the (whitened) energy left
out, Σ_{i>r} σ_i² / Σ σ², the relative output error, and `budget.lagrangian` picks one rank per
matrix (equivalently: rank-1 terms in order of energy per MAC, L·(m+n) each). A matrix whose rank
would reach m·n/(m+n) stays dense (factorising it would cost more than it saves). `uniform`:
every matrix at the same fraction of its break-even rank.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import nn

from core.kinds import LowRank
from core.macs import BlockShape, block_macs, dense_shape, linear_shapes, max_useful_rank
from core.methods import SVDParams
from workers.compression import lowrank
from workers.compression.linears.lowrank import LowRankLinear
from workers.compression.methods.factorized import Choice, FactorizedMethod


class SVDMethod(FactorizedMethod):
    name = "svd"
    Params = SVDParams
    params: SVDParams

    @property
    def needs_planning_pass(self) -> bool:
        return self.params.activation_aware and self.params.allocation == "global"

    def menu(self, weight: torch.Tensor, gram: torch.Tensor | None) -> list[Choice]:
        m, n = weight.shape
        energy = lowrank.spectrum(weight, gram, self.params.damping).relative_energy
        left = (1.0 - energy.cumsum(0)).clamp_min(0.0).tolist()
        return [(LowRank(m, n, r), left[r - 1]) for r in range(1, max_useful_rank(m, n) + 1)]

    def fit(self, weight: torch.Tensor, gram: torch.Tensor | None, module: nn.Module) -> None:
        pair = cast(LowRankLinear, module)
        fitted = lowrank.factorised(lowrank.spectrum(weight, gram, self.params.damping), pair.spec.rank, None,
                                    weight.dtype)
        with torch.no_grad():
            cast(nn.Linear, pair[0]).weight.copy_(cast(nn.Linear, fitted[0]).weight)
            cast(nn.Linear, pair[1]).weight.copy_(cast(nn.Linear, fitted[1]).weight)

    def plan(self, mac_target: float) -> list[BlockShape]:
        if self.params.allocation == "global":
            return super().plan(mac_target)
        g = self.geometry
        block_budget = mac_target * block_macs(g, dense_shape(g), self.seq_len)
        return [self._uniform(self.adapter.block_shape(layer), block_budget) for layer in self.adapter.layers]

    def _uniform(self, current: BlockShape, block_budget: float) -> BlockShape:
        """Every matrix at the same fraction c of its break-even rank m·n/(m+n), c by bisection."""
        dims = linear_shapes(self.geometry, current)

        def shape(c: float) -> BlockShape:
            ranks = {k: max(1, int(c * m * n / (m + n))) for k, (m, n) in dims.items()}
            return current.with_factors({
                k: LowRank(m, n, ranks[k]) for k, (m, n) in dims.items() if ranks[k] <= max_useful_rank(m, n)
            })

        lo, hi = 0.0, 1.0
        for _ in range(50):
            c = (lo + hi) / 2
            if block_macs(self.geometry, shape(c), self.seq_len) <= block_budget:
                lo = c
            else:
                hi = c
        return shape(lo)

    def compress_block(
        self, index: int, layer: nn.Module, stats: Any, shape: BlockShape
    ) -> dict[str, Any]:
        report = super().compress_block(index, layer, stats, shape)
        report["ranks"] = dict(shape.ranks)
        return report

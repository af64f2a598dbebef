"""`block_lowrank` (Gupta et al., arXiv 2406.11307): every block Linear cut into a grid of
contiguous blocks, each block factorised at its own rank.

Objective: activation-aware (default), the Linear's output error tr((W − Ŵ)·G·(W − Ŵ)ᵀ) on the
calibration Gram G: per-block SVD after whitening by the Cholesky factor of the block's column
chunk of G, then the stage-2 factors re-solved by least squares against the full G
(`workers.compression.linears.blocks`); `activation_aware: false`, ‖W − Ŵ‖_F by per-block SVD.

Allocation: every rank-1 term of every block costs the same L·(rows/grid + cols/grid) MACs in
its matrix, so a matrix's options are its top-k terms over all its blocks (k = 1, 2, …, in order
of whitened energy); `budget.lagrangian` chooses k per matrix across the model. The grid (default
2 × 2) is reduced to the nearest divisor where it does not divide a dimension.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import nn

from core.kinds import BlockLowRank
from core.methods import BlockLowRankParams
from workers.compression.linears.blocks import BlockLowRankLinear, Layout, block_spectra, energies, fit_blocks
from workers.compression.methods.factorized import Choice, FactorizedMethod


class BlockLowRankMethod(FactorizedMethod):
    name = "block_lowrank"
    Params = BlockLowRankParams
    params: BlockLowRankParams

    def menu(self, weight: torch.Tensor, gram: torch.Tensor | None) -> list[Choice]:
        m, n = weight.shape
        grid = self.params.grid_for(m, n)
        layout = Layout.contiguous(m, n, grid)
        table = energies(block_spectra(weight, gram, self.params.damping, layout))
        terms = sorted(
            ((float(e), i, j)
             for i, row in enumerate(table) for j, es in enumerate(row) for e in es.tolist()),
            key=lambda t: -t[0],
        )
        per_term = m // grid[0] + n // grid[1]
        ranks = [[0] * grid[1] for _ in range(grid[0])]
        out: list[Choice] = []
        left = 1.0
        for e, i, j in terms:
            if (len(out) + 1) * per_term >= m * n:
                break
            ranks[i][j] += 1
            left -= e
            out.append((BlockLowRank(m, n, grid, tuple(tuple(r) for r in ranks)), max(left, 0.0)))
        return out

    def fit(self, weight: torch.Tensor, gram: torch.Tensor | None, module: nn.Module) -> None:
        blr = cast(BlockLowRankLinear, module)
        m, n = weight.shape
        layout = Layout.contiguous(m, n, blr.spec.grid)
        spectra = block_spectra(weight, gram, self.params.damping, layout)
        ranks = [list(r) for r in blr.spec.ranks]
        blr.load_factors(*fit_blocks(weight, gram, self.params.damping, layout, ranks, spectra))

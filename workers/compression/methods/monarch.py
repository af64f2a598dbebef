"""`monarch` (Dao et al., arXiv 2204.00595): every block Linear as P·L·Pᵀ·R, block-diagonal L and R.

The projection onto Monarch matrices is closed-form: with b blocks, the entries of W that block
pair (i, j) produces (rows a·b + i, columns of chunk j) are a rank-r product, so the best fit is
a rank-r truncated SVD per block pair (Dao's rank-1 projection, generalised to rank r).
Objective: activation-aware (default) minimises tr((W − Ŵ)·G·(W − Ŵ)ᵀ): SVD of each block pair
whitened by its column chunk's Cholesky factor, then L re-solved by least squares against the
full Gram (`workers.compression.linears.blocks`); `activation_aware: false`, ‖W − Ŵ‖_F.

Allocation: each matrix's options are every (b, r) with b a common divisor of its dimensions
(2 ≤ b ≤ max_blocks, or the fixed `blocks`) and r ≤ min(out, in)/b, costing L·r·b·(out + in) MACs,
with the whitened energy each leaves out; `budget.lagrangian` picks one per matrix.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import nn

from core.kinds import Monarch
from core.methods import MonarchParams
from workers.compression.linears.blocks import Layout, MonarchLinear, block_spectra, energies, fit_blocks
from workers.compression.methods.factorized import Choice, FactorizedMethod


class MonarchMethod(FactorizedMethod):
    name = "monarch"
    Params = MonarchParams
    params: MonarchParams

    def menu(self, weight: torch.Tensor, gram: torch.Tensor | None) -> list[Choice]:
        m, n = weight.shape
        out: list[Choice] = []
        for b in self.params.block_counts(m, n):
            table = energies(block_spectra(weight, gram, self.params.damping, Layout.monarch(m, n, b)))
            kept = torch.zeros((), dtype=torch.float64)
            for r in range(1, min(m, n) // b + 1):
                if r * b * (m + n) >= m * n:
                    break
                kept = kept + sum(float(es[r - 1]) for row in table for es in row)
                out.append((Monarch(m, n, b, r), max(1.0 - float(kept), 0.0)))
        return out

    def fit(self, weight: torch.Tensor, gram: torch.Tensor | None, module: nn.Module) -> None:
        mon = cast(MonarchLinear, module)
        m, n = weight.shape
        b, r = mon.spec.blocks, mon.spec.rank
        layout = Layout.monarch(m, n, b)
        spectra = block_spectra(weight, gram, self.params.damping, layout)
        mon.load_factors(*fit_blocks(weight, gram, self.params.damping, layout, [[r] * b for _ in range(b)],
                                     spectra))

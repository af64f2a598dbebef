"""`mpo`: every block Linear as a matrix product operator (tensor train), fitted by TT-SVD.

Each dimension is split into `cores` balanced factors (`core.kinds.balanced_factors`); the bond
dimension χ of each matrix is chosen from the MAC target (or fixed for every matrix by `bond`, the
PicoGPT setting). Objective: activation-aware (default) minimises ‖(W − Ŵ)·(S_1 ⊗ … ⊗ S_K)‖_F, the
output error under the Kronecker-factored approximation of the calibration Gram, by TT-SVD of the
whitened tensor and un-whitening each core's input leg (`workers.compression.linears.mpo`);
`activation_aware: false` is plain TT-SVD, ‖W − Ŵ‖_F.

Allocation: each matrix's options are its candidate bonds (capped by the ranks of the unfoldings),
each fitted once and measured by its *true* relative output error against the full Gram,
tr(E·G·Eᵀ)/tr(W·G·Wᵀ); MACs are those of the cheaper contraction order; `budget.lagrangian`
picks χ per matrix.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import nn

from core.kinds import MPO, mpo_at_bond
from core.methods import MPOParams
from workers.compression.linears.mpo import MPOLinear, contract, kronecker_factors, tt_svd
from workers.compression.methods.factorized import Choice, FactorizedMethod, relative_output_error

CANDIDATE_BONDS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 18, 20, 22, 24, 28, 32, 40, 48, 56,
                   64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512)
FINE_BELOW = 128  # matrices this small get per-cut bond variants too (their uniform bonds are few)


class MPOMethod(FactorizedMethod):
    name = "mpo"
    Params = MPOParams
    params: MPOParams

    def _whiten(self, spec: MPO, gram: torch.Tensor | None) -> list[torch.Tensor] | None:
        return None if gram is None else kronecker_factors(gram, spec.in_factors, self.params.damping)

    def chains(self, fine: bool) -> list[tuple[int, ...]]:
        """Candidate bonds per cut: χ at every cut, and with `fine` also χ with one cut at the next
        candidate (finer steps in MACs, for small matrices with few bonds); a fixed `bond` is the
        one chain."""
        cuts = self.params.cores - 1
        if self.params.bond is not None:
            return [(self.params.bond,) * cuts]
        out = []
        for chi, up in zip(CANDIDATE_BONDS, CANDIDATE_BONDS[1:], strict=False):
            out.append((chi,) * cuts)
            if fine:
                out.extend(tuple(up if c == k else chi for c in range(cuts)) for k in range(cuts) if cuts > 1)
        return out

    def menu(self, weight: torch.Tensor, gram: torch.Tensor | None) -> list[Choice]:
        m, n = weight.shape
        out: list[Choice] = []
        seen: set[tuple[int, ...]] = set()
        whiten = None
        fine = min(m, n) <= FINE_BELOW
        for chain in self.chains(fine):
            spec = mpo_at_bond(m, n, self.params.cores, chain)
            if spec.bonds in seen:
                continue  # capped by the unfoldings' ranks: the same chain as a smaller one
            if self.keeps_dense_option() and spec.macs_per_token() >= m * n:
                if len(set(chain)) == 1:
                    break
                continue
            seen.add(spec.bonds)
            whiten = whiten if whiten is not None else self._whiten(spec, gram)
            approx = contract(tt_svd(weight, spec, whiten))
            out.append((spec, relative_output_error(weight, approx, gram)))
        return out

    def fit(self, weight: torch.Tensor, gram: torch.Tensor | None, module: nn.Module) -> None:
        mpo = cast(MPOLinear, module)
        mpo.load_cores(tt_svd(weight, mpo.spec, self._whiten(mpo.spec, gram)))

"""Low-rank factorisation of a Linear: truncated SVD, plain or activation-aware (SVD-LLM).

Plain: W (m × n) ≈ U_r·Σ_r·V_rᵀ. Activation-aware (SVD-LLM, arXiv 2403.07378): with the
calibration Gram G = XᵀX and its Cholesky factor S (G + λI = S·Sᵀ), the SVD of W·S gives
W ≈ U_r·Σ_r·(V_rᵀ·S⁻¹), which minimises ‖(W − W_r)·Xᵀ‖ on the calibration data; the squared
error of rank r is Σ_{i>r} σ_i². Stored as Linear(n → r, no bias) then Linear(r → m, bias),
with √Σ on each side.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
from torch import nn

from core.errors import InvalidCalibrationData


@dataclass
class Spectrum:
    """SVD of W (or W·S) in float64, kept to factorise at any rank."""

    u: torch.Tensor  # (m, p)
    s: torch.Tensor  # (p,)
    vh: torch.Tensor  # (p, n): Vᵀ, or Vᵀ·S⁻¹ when whitened

    @property
    def relative_energy(self) -> torch.Tensor:
        """σ_i² / Σσ²: the share of output error each rank-1 term removes."""
        energy = self.s**2
        return energy / energy.sum().clamp_min(1e-300)


def spectrum(weight: torch.Tensor, gram: torch.Tensor | None, damping: float) -> Spectrum:
    """SVD of W, or of W·S with S the Cholesky factor of the damped Gram."""
    w = weight.detach().double()
    if gram is None:
        u, s, vh = torch.linalg.svd(w, full_matrices=False)
        return Spectrum(u, s, vh)
    g = gram.double().to(w.device)
    g = (g + g.T) / 2
    ridge = damping * g.diagonal().mean().clamp_min(1e-300)
    eye = torch.eye(g.shape[0], dtype=g.dtype, device=g.device)
    chol = cholesky_with_retry(g, eye, ridge)
    u, s, vh = torch.linalg.svd(w @ chol, full_matrices=False)
    # Vᵀ·S⁻¹ = (S⁻ᵀ·V)ᵀ: a triangular solve, never an explicit inverse.
    vh = torch.linalg.solve_triangular(chol.T, vh.T, upper=True).T
    return Spectrum(u, s, vh)


def cholesky_with_retry(g: torch.Tensor, eye: torch.Tensor, ridge: torch.Tensor) -> torch.Tensor:
    for factor in (1.0, 10.0, 100.0, 1e4):
        chol, info = torch.linalg.cholesky_ex(g + eye * ridge * factor)
        if int(info) == 0:
            return cast(torch.Tensor, chol)
    raise InvalidCalibrationData(
        "calibration Gram is not positive definite even after damping", field="calibration"
    )


def factorised(spec: Spectrum, rank: int, bias: torch.Tensor | None, dtype: torch.dtype) -> nn.Sequential:
    """A `LowRankLinear` (Linear(n→r), Linear(r→m)) holding the rank-r approximation."""
    from workers.compression.linears.lowrank import LowRankLinear

    root = spec.s[:rank].sqrt()
    first = spec.vh[:rank] * root[:, None]  # (r, n)
    second = spec.u[:, :rank] * root[None, :]  # (m, r)
    pair = LowRankLinear(first.shape[1], rank, second.shape[0], bias=bias is not None, dtype=dtype,
                         device=spec.u.device)
    a, b = cast(nn.Linear, pair[0]), cast(nn.Linear, pair[1])
    with torch.no_grad():
        a.weight.copy_(first.to(dtype))
        b.weight.copy_(second.to(dtype))
        if bias is not None:
            b.bias.copy_(bias.detach())
    return pair

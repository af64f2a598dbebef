"""`mpo`: a matrix product operator (tensor train) and its fit by TT-SVD.

W (m × n) with m = ∏ i_k, n = ∏ j_k (row-major multi-indices) is the contraction of cores
C_k of shape (χ_{k-1}, i_k, j_k, χ_k). `MPOLinear` never forms W: the input, viewed as
(j_1, …, j_K), is contracted with one core at a time in the order the spec chose
(`core.kinds.MPO.step_macs` counts each step), so the MACs executed are the ones counted.

Fit (`tt_svd`), float64, bond χ_k capped per cut:

- plain: TT-SVD (Oseledets 2011) of the tensor with indices interleaved (i_1 j_1)(i_2 j_2)…,
  sequential truncated SVDs, which is quasi-optimal in ‖W − Ŵ‖_F (error ≤ √(K−1) × the best);
- activation-aware: minimises ‖(W − Ŵ)·S‖_F with S = S_1 ⊗ … ⊗ S_K, where S_k is the Cholesky
  factor of the k-th partial trace of the calibration Gram G = XᵀX (G ≈ G_1 ⊗ … ⊗ G_K, the
  nearest Kronecker-factored Gram in that sense). Whitening by a Kronecker product acts on
  each core's input leg separately, so TT-SVD of W·S followed by S_k⁻¹ on core k's leg keeps
  the exact tensor-train structure; the full S⁻¹ of an unstructured Gram would not. This is
  exact output-error minimisation when the input covariance is Kronecker-structured and an
  approximation otherwise; the methods measure the true output error tr(E·G·Eᵀ) of every
  candidate bond against the full Gram, which is what the allocator compares.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from core.kinds import MPO
from workers.compression.lowrank import cholesky_with_retry


class MPOLinear(nn.Module):
    def __init__(self, spec: MPO, *, bias: bool, dtype: torch.dtype | None = None,
                 device: Any = None) -> None:
        super().__init__()
        self._spec = spec
        kw: dict[str, Any] = {"dtype": dtype, "device": device}
        self.cores = nn.ParameterList([nn.Parameter(torch.empty(*shape, **kw))
                                       for shape in spec.core_shapes()])
        self.bias = nn.Parameter(torch.empty(spec.out_features, **kw)) if bias else None

    @classmethod
    def from_spec(cls, spec: MPO, bias: bool, dtype: torch.dtype, device: Any = None) -> MPOLinear:
        return cls(spec, bias=bias, dtype=dtype, device=device)

    @property
    def spec(self) -> MPO:
        return self._spec

    @property
    def output_bias(self) -> torch.Tensor | None:
        return self.bias

    def load_cores(self, cores: list[torch.Tensor]) -> None:
        with torch.no_grad():
            for p, c in zip(self.cores, cores, strict=True):
                p.copy_(c.to(p))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spec = self._spec
        i, j, chi, K = spec.out_factors, spec.in_factors, spec.chain(), spec.cores
        lead = x.shape[:-1]
        t = x.reshape(-1, spec.in_features)
        tokens = t.shape[0]
        if spec.order == "right":
            # state (T, ∏ j_<k, j_k·χ_k, ∏ i_>k); step k leaves (T, ∏ j_<k, χ_{k-1}·i_k, ∏ i_>k)
            s = t.reshape(tokens, math.prod(j[:-1]), j[-1], 1)
            for k in range(K - 1, -1, -1):
                core = self.cores[k].permute(2, 3, 0, 1).reshape(j[k] * chi[k + 1], chi[k] * i[k])
                s = torch.matmul(s.transpose(2, 3), core).transpose(2, 3)
                if k:
                    s = s.reshape(tokens, math.prod(j[: k - 1]), j[k - 1] * chi[k], math.prod(i[k:]))
            y = s.reshape(tokens, spec.out_features)
        else:
            # state (T, ∏ i_<k, χ_{k-1}·j_k, ∏ j_>k); step k leaves (T, ∏ i_<k, i_k·χ_k, ∏ j_>k)
            s = t.reshape(tokens, 1, j[0], math.prod(j[1:]))
            for k in range(K):
                core = self.cores[k].permute(0, 2, 1, 3).reshape(chi[k] * j[k], i[k] * chi[k + 1])
                s = torch.matmul(s.transpose(2, 3), core).transpose(2, 3)
                if k < K - 1:
                    s = s.reshape(tokens, math.prod(i[: k + 1]), chi[k + 1] * j[k + 1], math.prod(j[k + 2:]))
            y = s.reshape(tokens, spec.out_features)
        y = y.reshape(*lead, spec.out_features)
        return y + self.bias if self.bias is not None else y

    def extra_repr(self) -> str:
        s = self._spec
        return f"{s.in_features} → {s.out_features}, cores {s.core_shapes()}, order {s.order}"


def kronecker_factors(gram: torch.Tensor, in_factors: tuple[int, ...], damping: float) -> list[torch.Tensor]:
    """Cholesky factors S_k of the damped partial traces G_k of the Gram over each input leg."""
    g = gram.double()
    g = (g + g.T) / 2
    out = []
    for k, jk in enumerate(in_factors):
        p, q = math.prod(in_factors[:k]), math.prod(in_factors[k + 1:])
        gk = torch.einsum("axbayb->xy", g.reshape(p, jk, q, p, jk, q))
        gk = gk / gk.diagonal().mean().clamp_min(1e-300)
        ridge = damping * gk.diagonal().mean().clamp_min(1e-300)
        eye = torch.eye(jk, dtype=g.dtype, device=g.device)
        out.append(cholesky_with_retry(gk, eye, ridge))
    return out


def tt_svd(weight: torch.Tensor, spec: MPO, whiten: list[torch.Tensor] | None = None) -> list[torch.Tensor]:
    """The cores of `spec` (float64) fitted to W, or to W·(S_1 ⊗ … ⊗ S_K) then un-whitened."""
    i, j, K = spec.out_factors, spec.in_factors, spec.cores
    t = weight.detach().double().reshape(*i, *j)
    if whiten is not None:
        for k, s in enumerate(whiten):  # contract input leg k with S_k
            t = torch.movedim(torch.tensordot(t, s.to(t), dims=([K + k], [0])), -1, K + k)
    order = [d for k in range(K) for d in (k, K + k)]
    t = t.permute(*order).contiguous()  # (i_1, j_1, i_2, j_2, …)
    chi = spec.chain()
    cores = []
    rest = t.reshape(i[0] * j[0], -1)
    for k in range(K - 1):
        u, s, vh = torch.linalg.svd(rest, full_matrices=False)
        r = chi[k + 1]
        cores.append(u[:, :r].reshape(chi[k], i[k], j[k], r))
        rest = (s[:r, None] * vh[:r]).reshape(r * i[k + 1] * j[k + 1], -1)
    cores.append(rest.reshape(chi[K - 1], i[K - 1], j[K - 1], 1))
    if whiten is not None:  # core_k ← core_k · S_k⁻¹ on its input leg
        for k, s in enumerate(whiten):
            c = cores[k].permute(0, 1, 3, 2)  # (χ, i, χ', j)
            c = torch.linalg.solve_triangular(s.to(c), c.reshape(-1, j[k]), upper=False, left=False)
            cores[k] = c.reshape(chi[k], i[k], chi[k + 1], j[k]).permute(0, 1, 3, 2).contiguous()
    return cores


def contract(cores: list[torch.Tensor]) -> torch.Tensor:
    """The full matrix (∏ i_k × ∏ j_k) of a chain of cores (for errors and tests; never executed)."""
    t = cores[0]  # (1, i, j, χ)
    for core in cores[1:]:
        t = torch.tensordot(t, core, dims=([t.dim() - 1], [0]))
    t = t.squeeze(0).squeeze(-1)  # (i_1, j_1, …, i_K, j_K)
    K = len(cores)
    t = t.permute(*range(0, 2 * K, 2), *range(1, 2 * K, 2))
    m = math.prod(c.shape[1] for c in cores)
    return t.reshape(m, -1)

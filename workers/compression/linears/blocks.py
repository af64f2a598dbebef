"""`block_lowrank` and `monarch`: a matrix cut into row groups × column chunks, each block low rank.

Both execute in two stages with a permutation between them (`core.kinds` counts the MACs):
stage 1 maps each column chunk j of the input to the codes of every block in it (R_j = Σ_i r_ij
outputs), the codes are regrouped by row group, and stage 2 maps row group i's codes
(C_i = Σ_j r_ij) to its outputs. Block low rank has contiguous row groups and a rank per block
(ragged, so each stage is one matmul per chunk); Monarch has one rank everywhere and Dao's stride
permutation on the output (row a·b + i is in group i), so each stage is one batched matmul.

Fit (`fit_blocks`), float64:

- plain (no Gram): each block's truncated SVD, which minimises ‖W − Ŵ‖_F over the structure
  (the blocks are disjoint, so the Frobenius error is the sum of the blocks' errors);
- activation-aware: minimises the output error tr((W − Ŵ)·G·(W − Ŵ)ᵀ), G = XᵀX the calibration
  Gram of the Linear's input. First each block's SVD after whitening its column chunk by the
  Cholesky factor of G's diagonal block G_jj (SVD-LLM per chunk: optimal when the chunks'
  inputs are uncorrelated, and Vᵀ·S_j⁻¹ keeps the block rank r); then stage 2 is re-solved by
  least squares against the full Gram, U_i = W_i·G·B_iᵀ·(B_i·G·B_iᵀ)⁻¹ (G damped by λI) with B_i the stage-1
  codes of row group i, which is exact for the chosen stage 1 and keeps the structure (U_i is
  row group i's stage-2 matrix). The error never exceeds that of the per-chunk fit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from core.kinds import BlockLowRank, Monarch
from workers.compression import lowrank


@dataclass(frozen=True)
class Layout:
    """Which rows form each row group and which columns each column chunk."""

    rows: list[torch.Tensor]  # row indices of group i
    cols: list[slice]  # column chunk j

    @classmethod
    def contiguous(cls, m: int, n: int, grid: tuple[int, int]) -> Layout:
        mc, nc = m // grid[0], n // grid[1]
        rows = [torch.arange(i * mc, (i + 1) * mc) for i in range(grid[0])]
        return cls(rows, [slice(j * nc, (j + 1) * nc) for j in range(grid[1])])

    @classmethod
    def monarch(cls, m: int, n: int, blocks: int) -> Layout:
        nc = n // blocks
        rows = [torch.arange(i, m, blocks) for i in range(blocks)]
        return cls(rows, [slice(j * nc, (j + 1) * nc) for j in range(blocks)])


Spectra = list[list[lowrank.Spectrum]]  # [row group][column chunk]


def block_spectra(weight: torch.Tensor, gram: torch.Tensor | None, damping: float, layout: Layout) -> Spectra:
    """The SVD of every block, whitened by its column chunk's Gram block when a Gram is given.

    Per column chunk: one Cholesky factor S_j of the damped G_jj, one batched SVD of the row
    groups' blocks times S_j, and Vᵀ·S_j⁻¹ by a triangular solve (as `lowrank.spectrum`)."""
    w = weight.detach().double()
    out: Spectra = [[] for _ in layout.rows]
    for cols in layout.cols:
        blocks = torch.stack([w[rows.to(w.device)][:, cols] for rows in layout.rows])  # (groups, p, q)
        if gram is None:
            u, s, vh = torch.linalg.svd(blocks, full_matrices=False)
        else:
            g = gram.double().to(w.device)[cols, cols]
            g = (g + g.T) / 2
            ridge = damping * g.diagonal().mean().clamp_min(1e-300)
            eye = torch.eye(g.shape[0], dtype=g.dtype, device=g.device)
            chol = lowrank.cholesky_with_retry(g, eye, ridge)
            u, s, vh = torch.linalg.svd(blocks @ chol, full_matrices=False)
            vh = torch.linalg.solve_triangular(chol.T, vh.transpose(1, 2), upper=True).transpose(1, 2)
        for i in range(len(layout.rows)):
            out[i].append(lowrank.Spectrum(u[i], s[i], vh[i]))
    return out


def energies(spectra: Spectra) -> list[list[torch.Tensor]]:
    """σ² of every block's terms over the total of all blocks: each term's share of the error."""
    total = sum(float((s.s**2).sum()) for row in spectra for s in row) or 1.0
    return [[(s.s**2) / total for s in row] for row in spectra]


def fit_blocks(
    weight: torch.Tensor, gram: torch.Tensor | None, damping: float, layout: Layout,
    ranks: list[list[int]], spectra: Spectra,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(stage 1 per column chunk: R_j × n_j, codes ordered by row group; stage 2 per row group:
    m_i × C_i, codes ordered by column chunk), in float64 (see the module docstring)."""
    first_parts: list[list[torch.Tensor]] = [[] for _ in layout.cols]
    second: list[torch.Tensor] = []
    for i, row in enumerate(spectra):
        parts = []
        for j, spec in enumerate(row):
            r = ranks[i][j]
            root = spec.s[:r].sqrt()
            first_parts[j].append(spec.vh[:r] * root[:, None])
            parts.append(spec.u[:, :r] * root[None, :])
        second.append(torch.cat(parts, dim=1))
    first = [torch.cat(p, dim=0) for p in first_parts]
    if gram is not None:
        second = _refit_stage2(weight.detach().double(), gram.double().to(weight.device), damping,
                               layout, ranks, first, second)
    return first, second


def _refit_stage2(
    w: torch.Tensor, g: torch.Tensor, damping: float, layout: Layout, ranks: list[list[int]],
    first: list[torch.Tensor], second: list[torch.Tensor],
) -> list[torch.Tensor]:
    """Least squares for each row group's stage 2 against the full damped Gram, stage 1 fixed.

    The ridge is on the Gram (G + λI, as in the whitening), not on the normal equations, so a W
    that the structure holds exactly is recovered exactly."""
    g = (g + g.T) / 2
    g = g + damping * g.diagonal().mean().clamp_min(1e-300) * torch.eye(g.shape[0], dtype=g.dtype,
                                                                        device=g.device)
    wg = w @ g
    offsets = [[0] * len(layout.cols) for _ in layout.rows]
    for j in range(len(layout.cols)):
        at = 0
        for i in range(len(layout.rows)):
            offsets[i][j] = at
            at += ranks[i][j]
    out = []
    for i, rows in enumerate(layout.rows):
        codes = [first[j][offsets[i][j]: offsets[i][j] + ranks[i][j]] for j in range(len(layout.cols))]
        c = sum(ranks[i])
        if c == 0:
            out.append(second[i])
            continue
        b = torch.zeros(c, w.shape[1], dtype=w.dtype, device=w.device)  # B_i: codes in input coordinates
        at = 0
        for j, cols in enumerate(layout.cols):
            b[at: at + ranks[i][j], cols] = codes[j]
            at += ranks[i][j]
        bg = b @ g
        normal = bg @ b.T
        normal = (normal + normal.T) / 2
        rhs = wg[rows.to(w.device)] @ b.T  # W_i·G·B_iᵀ
        chol, info = torch.linalg.cholesky_ex(normal)
        if int(info) != 0:
            out.append(second[i])  # the per-chunk fit stands
            continue
        out.append(torch.cholesky_solve(rhs.T, chol).T)
    return out


class BlockLowRankLinear(nn.Module):
    """Grid of rows × cols blocks, block (i, j) at rank ranks[i][j], contiguous chunks."""

    def __init__(self, spec: BlockLowRank, *, bias: bool, dtype: torch.dtype | None = None,
                 device: Any = None) -> None:
        super().__init__()
        self._spec = spec
        (gr, gc), (mc, nc) = spec.grid, spec.chunk
        col_ranks = [sum(spec.ranks[i][j] for i in range(gr)) for j in range(gc)]
        row_ranks = [sum(spec.ranks[i]) for i in range(gr)]
        kw: dict[str, Any] = {"dtype": dtype, "device": device}
        self.first = nn.ParameterList([nn.Parameter(torch.empty(r, nc, **kw)) for r in col_ranks])
        self.second = nn.ParameterList([nn.Parameter(torch.empty(mc, c, **kw)) for c in row_ranks])
        self.bias = nn.Parameter(torch.empty(spec.out_features, **kw)) if bias else None

    @classmethod
    def from_spec(cls, spec: BlockLowRank, bias: bool, dtype: torch.dtype,
                  device: Any = None) -> BlockLowRankLinear:
        return cls(spec, bias=bias, dtype=dtype, device=device)

    @property
    def spec(self) -> BlockLowRank:
        return self._spec

    @property
    def output_bias(self) -> torch.Tensor | None:
        return self.bias

    def load_factors(self, first: list[torch.Tensor], second: list[torch.Tensor]) -> None:
        with torch.no_grad():
            for p, t in zip([*self.first, *self.second], [*first, *second], strict=True):
                p.copy_(t.to(p))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spec = self._spec
        (gr, gc), nc = spec.grid, spec.chunk[1]
        chunks = torch.split(x, nc, dim=-1)
        codes = [
            torch.split(F.linear(chunks[j], self.first[j]), [spec.ranks[i][j] for i in range(gr)], dim=-1)
            for j in range(gc)
        ]
        y = torch.cat(
            [F.linear(torch.cat([codes[j][i] for j in range(gc)], dim=-1), self.second[i])
             for i in range(gr)],
            dim=-1,
        )
        return y + self.bias if self.bias is not None else y

    def extra_repr(self) -> str:
        return f"{self._spec.in_features} → {self._spec.out_features}, grid {self._spec.grid}"


class MonarchLinear(nn.Module):
    """P·L·Pᵀ·R: `first` (b, b·r, in/b) is R's blocks, `second` (b, out/b, b·r) is L's."""

    def __init__(self, spec: Monarch, *, bias: bool, dtype: torch.dtype | None = None,
                 device: Any = None) -> None:
        super().__init__()
        self._spec = spec
        b, r = spec.blocks, spec.rank
        kw: dict[str, Any] = {"dtype": dtype, "device": device}
        self.first = nn.Parameter(torch.empty(b, b * r, spec.in_features // b, **kw))
        self.second = nn.Parameter(torch.empty(b, spec.out_features // b, b * r, **kw))
        self.bias = nn.Parameter(torch.empty(spec.out_features, **kw)) if bias else None

    @classmethod
    def from_spec(cls, spec: Monarch, bias: bool, dtype: torch.dtype, device: Any = None) -> MonarchLinear:
        return cls(spec, bias=bias, dtype=dtype, device=device)

    @property
    def spec(self) -> Monarch:
        return self._spec

    @property
    def output_bias(self) -> torch.Tensor | None:
        return self.bias

    def load_factors(self, first: list[torch.Tensor], second: list[torch.Tensor]) -> None:
        with torch.no_grad():
            self.first.copy_(torch.stack(first).to(self.first))
            self.second.copy_(torch.stack(second).to(self.second))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, r, m = self._spec.blocks, self._spec.rank, self._spec.out_features
        lead = x.shape[:-1]
        t = x.reshape(-1, b, self._spec.in_features // b).transpose(0, 1)  # (b_j, T, n/b)
        z = torch.bmm(t, self.first.transpose(1, 2))  # (b_j, T, b_i·r)
        tokens = z.shape[1]
        z = z.reshape(b, tokens, b, r).permute(2, 1, 0, 3).reshape(b, tokens, b * r)  # (b_i, T, b_j·r)
        y = torch.bmm(z, self.second.transpose(1, 2))  # (b_i, T, m/b)
        y = y.permute(1, 2, 0).reshape(*lead, m)  # output row a·b + i
        return y + self.bias if self.bias is not None else y

    def extra_repr(self) -> str:
        s = self._spec
        return f"{s.in_features} → {s.out_features}, {s.blocks} blocks, rank {s.rank}"

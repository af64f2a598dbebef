"""Interpolative decomposition of a consumer's input (STAT, Flynn et al., arXiv 2406.00061).

Z (tokens × n) is the consumer's input, W (d × n) the consumer. Column-pivoted QR of the
scaled Z·D, D = diag(‖W[:, j]‖), picks k columns S; the interpolation matrix T (k × n) with
T[:, S] = I and T[:, Sᶜ] = R11⁻¹·R12 (unscaled by D) gives Z ≈ Z[:, S]·T, and the consumer
is corrected to W·Tᵀ (d × k).

Only R is needed, and RᵀR = D·G·D for the Gram G = ZᵀZ with the same pivots (the greedy
column-norm pivot of QR is the greedy diagonal pivot of Cholesky), so the factorisation runs
on the streamed Gram with LAPACK's pivoted Cholesky (dpstrf), in float64 with a small ridge
λ·mean(diag) for stability. Memory is n², whatever the number of tokens.

Heads are blocks of d_h columns: a block-pivoted variant picks the head whose residual
(scaled) energy is largest, removes its span by a Schur complement, and repeats.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import numpy as np
import torch
from scipy.linalg import lapack, solve_triangular


@dataclass(frozen=True)
class PivotedFactor:
    """P·(D·G·D + λI)·Pᵀ = L·Lᵀ with pivots `order`; `errors[k]` = relative residual keeping k."""

    factor: np.ndarray  # (n, n) lower triangular, rows and columns in pivot order
    order: np.ndarray  # (n,) column indices, most important first
    scale: np.ndarray  # (n,) D
    errors: np.ndarray  # (n + 1,) errors[k] = trace of the Schur complement after k pivots / trace


def column_scale(consumer_weight: torch.Tensor) -> np.ndarray:
    """D_j = ‖W[:, j]‖, floored so a dead column never divides by zero."""
    norms: np.ndarray = consumer_weight.detach().double().norm(dim=0).cpu().numpy()
    return cast(np.ndarray, np.maximum(norms, 1e-12 * max(float(norms.max()), 1e-30)))


def scaled_gram(gram: torch.Tensor, scale: np.ndarray, damping: float) -> np.ndarray:
    g: np.ndarray = gram.detach().double().cpu().numpy() * scale[:, None] * scale[None, :]
    g = (g + g.T) / 2
    ridge = damping * float(np.mean(np.diag(g)))
    g[np.diag_indices_from(g)] += max(ridge, 1e-300)
    return g


def pivoted_cholesky(gram: torch.Tensor, scale: np.ndarray, damping: float) -> PivotedFactor:
    """Pivoted Cholesky of the scaled, damped Gram (the R of column-pivoted QR of Z·D)."""
    g = scaled_gram(gram, scale, damping)
    total = float(np.trace(g))
    c, piv, rank, info = lapack.dpstrf(g, lower=1, tol=-1.0)
    if info < 0:
        raise ValueError(f"dpstrf: illegal argument {-info}")
    n = g.shape[0]
    factor = np.tril(c)
    if rank < n:  # numerically rank-deficient even with the ridge: the rest is negligible
        factor[:, rank:] = 0.0
        factor[rank:, rank:] = np.eye(n - rank) * np.sqrt(max(total, 1e-300) * 1e-30)
    explained = np.concatenate([[0.0], np.cumsum((factor**2).sum(axis=0))])
    errors = np.clip(1.0 - explained / total, 0.0, 1.0)
    errors[-1] = 0.0
    return PivotedFactor(factor=factor, order=piv.astype(np.int64) - 1, scale=scale, errors=errors)


def interpolation(pf: PivotedFactor, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Kept columns S (ascending) and T (k × n) with T[:, S] = I and Z ≈ Z[:, S]·T."""
    n = pf.order.shape[0]
    kept, dropped = pf.order[:k], pf.order[k:]
    t = np.zeros((k, n))
    t[np.arange(k), kept] = 1.0
    if k < n:
        l11, l21 = pf.factor[:k, :k], pf.factor[k:, :k]
        t_scaled = solve_triangular(l11.T, l21.T, lower=False)  # R11⁻¹·R12
        t[:, dropped] = t_scaled * pf.scale[kept][:, None] / pf.scale[dropped][None, :]
    sort = np.argsort(kept)
    return kept[sort], t[sort]


@dataclass(frozen=True)
class HeadSelection:
    kept: np.ndarray  # ascending head indices
    errors: np.ndarray  # errors[j] = relative residual after j greedy picks (j = 0..len(order))
    order: np.ndarray  # heads in the order they were picked


def select_heads(
    gram: torch.Tensor,
    scale: np.ndarray,
    head_dim: int,
    *,
    damping: float,
    keep: int,
    group_size: int = 1,
    per_group: int | None = None,
) -> HeadSelection:
    """Greedy block pivoting over heads on the scaled Gram.

    With grouped-query attention (`group_size` query heads share a kv head), at most
    `per_group` heads are kept in each group so every group keeps the same number of query
    heads and the kv mapping stays valid.
    """
    g = scaled_gram(gram, scale, damping)
    total = float(np.trace(g))
    heads = g.shape[0] // head_dim
    cap = per_group if per_group is not None else heads
    counts = np.zeros(max(1, heads // group_size), dtype=np.int64)
    residual = g.copy()
    order: list[int] = []
    errors = [1.0]
    for _ in range(keep):
        best, best_score = -1, -1.0
        for h in range(heads):
            if h in order or counts[h // group_size] >= cap:
                continue
            block = slice(h * head_dim, (h + 1) * head_dim)
            score = float(np.trace(residual[block, block]))
            if score > best_score:
                best, best_score = h, score
        block = slice(best * head_dim, (best + 1) * head_dim)
        pivot = residual[block, block]
        chol = np.linalg.cholesky(pivot + np.eye(head_dim) * 1e-12 * max(np.trace(pivot), 1e-300))
        left = solve_triangular(chol, residual[block, :], lower=True)  # L⁻¹·R[h, :]
        residual -= left.T @ left
        order.append(best)
        counts[best // group_size] += 1
        errors.append(max(0.0, float(np.trace(residual)) / total))
    kept = np.sort(np.array(order, dtype=np.int64))
    return HeadSelection(kept=kept, errors=np.array(errors), order=np.array(order))


def head_interpolation(
    gram: torch.Tensor, scale: np.ndarray, kept_dims: np.ndarray, damping: float
) -> np.ndarray:
    """T (k × n) over head dimensions: T[:, S] = I, T[:, Sᶜ] = G̃_SS⁻¹·G̃_S,Sᶜ unscaled by D."""
    g = scaled_gram(gram, scale, damping)
    n = g.shape[0]
    dropped = np.setdiff1d(np.arange(n), kept_dims)
    t = np.zeros((kept_dims.shape[0], n))
    t[np.arange(kept_dims.shape[0]), kept_dims] = 1.0
    if dropped.size:
        chol = np.linalg.cholesky(g[np.ix_(kept_dims, kept_dims)])
        rhs = g[np.ix_(kept_dims, dropped)]
        t_scaled = solve_triangular(chol.T, solve_triangular(chol, rhs, lower=True), lower=False)
        t[:, dropped] = t_scaled * scale[kept_dims][:, None] / scale[dropped][None, :]
    return t

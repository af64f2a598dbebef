"""`id`: STAT-style interpolative-decomposition pruning of FFN neurons, then attention heads.

Per block (staged by default: statistics from the outputs of the already compressed blocks):
neurons are chosen by pivoted QR of the down projection's input scaled by its column norms,
and the down projection absorbs the interpolation matrix (W_down·Tᵀ); heads are chosen by
block pivoting over the output projection's input, which absorbs the least-squares
correction of the dropped heads. The global allocation reads every block's error curves
from one dense planning pass. See `workers.compression.interpolative` for the mathematics.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import torch
from torch import nn

from core.methods import IDParams
from workers.compression import budget, interpolative
from workers.compression.calibration import BlockStats
from workers.compression.methods.structured import StructuredMethod


class InterpolativeMethod(StructuredMethod):
    name = "id"
    Params = IDParams

    @property
    def needs_planning_pass(self) -> bool:
        return self.allocation == "global"

    def observed(self, layer: nn.Module) -> list[tuple[str, nn.Module]]:
        a = self.adapter
        names = ["down"] + (["o"] if self.params.prune_heads else [])
        return [(n, a.linear(layer, n)) for n in names]

    def observe_plan(self, index: int, layer: nn.Module, stats: BlockStats) -> None:
        a, g = self.adapter, self.geometry
        pf = self.neuron_factor(stats, a.weight(layer, "down"))
        curves = {"neurons": budget.Curve(np.arange(1, g.intermediate + 1), pf.errors[1:])}
        if self.params.prune_heads:
            curves["heads"] = self._head_curve(stats, a.weight(layer, "o"))
        self.curves[index] = curves

    def neuron_factor(self, stats: BlockStats, down: torch.Tensor) -> interpolative.PivotedFactor:
        """Pivoted Cholesky (pivot order and R) of the down projection's scaled input Gram, computed
        once per Gram and consumer scale: the planning pass's serves every target of an unstaged
        sweep, whose compression passes read the same dense Gram and dense weights."""
        gram = stats.grams["down"]
        scale = interpolative.column_scale(down)
        key = ("pivoted_cholesky", self.params.damping)
        cached = gram.memo.get(key)
        if cached is not None and np.array_equal(cached.scale, scale):
            return cast(interpolative.PivotedFactor, cached)
        pf = interpolative.pivoted_cholesky(gram.mean(), scale, self.params.damping)
        gram.memo[key] = pf
        return pf

    def _head_curve(self, stats: BlockStats, o_weight: torch.Tensor) -> budget.Curve:
        g, damp = self.geometry, self.params.damping
        gram, scale = stats.grams["o"].mean(), interpolative.column_scale(o_weight)
        widths = self.head_widths()
        if g.group_size == 1:
            sel = interpolative.select_heads(gram, scale, g.head_dim, damping=damp, keep=g.heads)
            return budget.Curve(widths, sel.errors[1:])
        errors = []
        for width in widths:
            sel = interpolative.select_heads(
                gram, scale, g.head_dim, damping=damp, keep=int(width),
                group_size=g.group_size, per_group=int(width) // g.kv_heads,
            )
            errors.append(sel.errors[-1])
        return budget.Curve(widths, np.minimum.accumulate(np.array(errors)))

    def select_neurons(
        self, layer: nn.Module, stats: BlockStats, keep: int
    ) -> tuple[np.ndarray, torch.Tensor, Any]:
        down = self.adapter.weight(layer, "down")
        pf = self.neuron_factor(stats, down)
        kept, t = interpolative.interpolation(pf, keep)
        consumer = down.detach().double() @ torch.from_numpy(t).to(down.device).T
        return kept, consumer, float(pf.errors[keep])

    def select_heads(
        self, layer: nn.Module, stats: BlockStats, keep: int
    ) -> tuple[np.ndarray, torch.Tensor, Any]:
        g, damp = self.geometry, self.params.damping
        o = self.adapter.weight(layer, "o")
        gram, scale = stats.grams["o"].mean(), interpolative.column_scale(o)
        per_group = keep // g.kv_heads if g.group_size > 1 else None
        sel = interpolative.select_heads(
            gram, scale, g.head_dim, damping=damp, keep=keep, group_size=g.group_size, per_group=per_group
        )
        dims = (sel.kept[:, None] * g.head_dim + np.arange(g.head_dim)[None, :]).ravel()
        t = interpolative.head_interpolation(gram, scale, dims, damp)
        consumer = o.detach().double() @ torch.from_numpy(t).to(o.device).T
        return sel.kept, consumer, float(sel.errors[-1])

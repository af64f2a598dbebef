"""`magnitude`: the structured baseline. Same widths and surgery as `id`, units scored by
weight norms (‖producer row‖·‖consumer column‖), the consumer sliced with no correction.
Data-free: it needs no calibration batches, which is what makes it the baseline that shows
what the interpolation correction buys.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import torch
from torch import nn

from core.methods import MagnitudeParams
from workers.compression import budget
from workers.compression.calibration import BlockStats
from workers.compression.methods.structured import StructuredMethod


class MagnitudeMethod(StructuredMethod):
    name = "magnitude"
    Params = MagnitudeParams

    @property
    def needs_data(self) -> bool:
        return False

    def _neuron_scores(self, layer: nn.Module) -> np.ndarray:
        a = self.adapter
        score = a.weight(layer, "down").detach().double().norm(dim=0)
        for name in a.spec.ffn_producers:
            score = score * a.weight(layer, name).detach().double().norm(dim=1)
        return cast(np.ndarray, score.cpu().numpy())

    def _head_scores(self, layer: nn.Module) -> np.ndarray:
        g, a = self.geometry, self.adapter
        o = a.weight(layer, "o").detach().double()
        heads = o.shape[1] // g.head_dim
        out_norm = o.reshape(o.shape[0], heads, g.head_dim).pow(2).sum(dim=(0, 2)).sqrt()
        q = a.weight(layer, a.spec.query_producer).detach().double()
        q = q[: heads * g.head_dim]  # its first rows are the queries, fused or not (core.archs)
        in_norm = q.reshape(heads, g.head_dim, -1).pow(2).sum(dim=(1, 2)).sqrt()
        return (out_norm * in_norm).cpu().numpy()

    def weight_curves(self, index: int) -> dict[str, budget.Curve]:
        layer = self.adapter.layers[index]
        energy = np.sort(self._neuron_scores(layer) ** 2)[::-1]
        widths = np.arange(1, energy.size + 1)
        curves = {"neurons": budget.Curve(widths, 1 - np.cumsum(energy) / energy.sum())}
        if self.params.prune_heads:
            widths = self.head_widths()
            scores = np.sort(self._head_scores(layer) ** 2)[::-1]
            per_width = np.cumsum(scores)[widths - 1] / scores.sum()
            curves["heads"] = budget.Curve(widths, np.clip(1 - per_width, 0, 1))
        for c in curves.values():
            c.errors[-1] = 0.0
        return curves

    def select_neurons(
        self, layer: nn.Module, stats: BlockStats, keep: int
    ) -> tuple[np.ndarray, torch.Tensor, Any]:
        kept = np.sort(np.argsort(-self._neuron_scores(layer), kind="stable")[:keep])
        down = self.adapter.weight(layer, "down").detach()
        return kept, down[:, torch.as_tensor(kept, device=down.device)], None

    def select_heads(
        self, layer: nn.Module, stats: BlockStats, keep: int
    ) -> tuple[np.ndarray, torch.Tensor, Any]:
        g = self.geometry
        scores = self._head_scores(layer)
        if g.group_size > 1:
            per_group = keep // g.kv_heads
            groups = scores.reshape(g.kv_heads, g.group_size)
            top = np.argsort(-groups, axis=1, kind="stable")[:, :per_group]
            kept = np.sort((top + np.arange(g.kv_heads)[:, None] * g.group_size).ravel())
        else:
            kept = np.sort(np.argsort(-scores, kind="stable")[:keep])
        dims = (kept[:, None] * g.head_dim + np.arange(g.head_dim)[None, :]).ravel()
        o = self.adapter.weight(layer, "o").detach()
        return kept, o[:, torch.as_tensor(dims, device=o.device)], None

"""Structured pruning shared by `id` and `magnitude`: widths, budget, and block surgery.

A block keeps `neurons` FFN channels (rows of the producers up/gate, columns of the consumer
down) and `heads` attention heads (rows of q, k, v, columns of o). With grouped-query
attention every kv group keeps the same number of query heads and all kv heads stay, so
`num_key_value_groups = heads / kv_heads` remains an integer.

Subclasses decide which units to keep and how to rewrite the consumer (ID: interpolation
correction; magnitude: plain column slicing).
"""

from __future__ import annotations

from abc import abstractmethod
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import nn

from core.archs import ArchSpec, fused_qkv_offsets
from core.macs import BlockShape, block_macs, dense_shape, uniform_shape
from core.methods import StructuredParams
from workers.compression import budget
from workers.compression.calibration import BlockStats
from workers.compression.methods.base import Method


class StructuredMethod(Method):
    params: StructuredParams
    PLANNING_STATE = ("curves",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.curves: dict[int, dict[str, budget.Curve]] = {}
        self.allocation = self.params.allocation
        if self.allocation == "auto":
            self.allocation = "uniform" if self.geometry.lm_head else "global"

    def resolved(self) -> dict[str, Any]:
        return {"allocation_resolved": self.allocation}

    # ----- planning -------------------------------------------------------------------
    def shape_of(self, widths: dict[str, int]) -> BlockShape:
        g = self.geometry
        heads = widths.get("heads", g.heads)
        kv = g.kv_heads if g.group_size > 1 else heads
        return BlockShape(heads=heads, kv_heads=kv, neurons=widths["neurons"])

    def component_macs(self, component: str, width: int) -> float:
        """MACs of one component of a block at `width`: block MACs are their sum (core.macs)."""
        g = self.geometry
        if component == "neurons":
            return block_macs(g, BlockShape(heads=0, kv_heads=0, neurons=width), self.seq_len)
        shape = self.shape_of({"heads": width, "neurons": 0})
        return block_macs(g, shape, self.seq_len)

    def plan(self, mac_target: float) -> list[BlockShape]:
        g, n = self.geometry, self.geometry.num_layers
        if self.allocation == "uniform":
            return [uniform_shape(g, mac_target, self.seq_len, prune_heads=self.params.prune_heads)] * n
        total = mac_target * n * block_macs(g, dense_shape(g), self.seq_len)
        items: list[tuple[int, str]] = []
        menus: list[list[budget.Option]] = []
        for i in range(n):
            curves = _floor(self.curves.get(i) or self.weight_curves(i), self.params.min_keep)
            curves.setdefault("heads", budget.Curve(np.array([g.heads]), np.array([0.0])))  # heads kept
            for name, curve in curves.items():
                items.append((i, name))
                menus.append(curve.menu(partial(self.component_macs, name)))
        widths: list[dict[str, int]] = [{} for _ in range(n)]
        for (i, name), option in zip(items, budget.threshold(menus, total), strict=True):
            widths[i][name] = option.choice
        return [self.shape_of(w) for w in widths]

    def head_widths(self) -> np.ndarray:
        """Candidate numbers of query heads: any count, or multiples of the kv groups (GQA)."""
        g = self.geometry
        if g.group_size > 1:
            return np.arange(1, g.group_size + 1) * g.kv_heads
        return np.arange(1, g.heads + 1)

    def weight_curves(self, index: int) -> dict[str, budget.Curve]:
        raise NotImplementedError(f"{self.name} plans globally only from a planning pass")

    # ----- compression ----------------------------------------------------------------
    def compress_block(
        self, index: int, layer: nn.Module, stats: BlockStats, shape: BlockShape
    ) -> dict[str, Any]:
        a = self.adapter
        report: dict[str, Any] = {"index": index}
        kept_heads = np.arange(a.block_shape(layer).heads)
        if shape.neurons < a.block_shape(layer).neurons:
            kept, consumer, err = self.select_neurons(layer, stats, shape.neurons)
            prune_neurons(a, layer, kept, consumer)
            report["neuron_error"] = err
        if shape.heads < a.block_shape(layer).heads:
            kept_heads, consumer, err = self.select_heads(layer, stats, shape.heads)
            prune_heads(a, layer, kept_heads, consumer)
            report["head_error"] = err
        final = a.block_shape(layer)
        report.update(heads=final.heads, kv_heads=final.kv_heads, neurons=final.neurons)
        report["kept_heads"] = kept_heads.tolist()
        return report

    @abstractmethod
    def select_neurons(
        self, layer: nn.Module, stats: BlockStats, keep: int
    ) -> tuple[np.ndarray, torch.Tensor, float | None]:
        """Kept neuron indices (ascending), the new consumer weight (d × keep), error signal."""

    @abstractmethod
    def select_heads(
        self, layer: nn.Module, stats: BlockStats, keep: int
    ) -> tuple[np.ndarray, torch.Tensor, float | None]:
        """Kept query heads (ascending), the new output-projection weight, error signal."""


def _floor(curves: dict[str, budget.Curve], fraction: float) -> dict[str, budget.Curve]:
    """Drop candidate widths below `fraction` of the full width (the full width always stays)."""
    out = {}
    for name, c in curves.items():
        keep = c.widths >= fraction * c.widths[-1]
        keep[-1] = True
        out[name] = budget.Curve(c.widths[keep], c.errors[keep])
    return out


def _rows(linear: nn.Linear, rows: np.ndarray) -> nn.Linear:
    index = torch.as_tensor(rows, dtype=torch.long, device=linear.weight.device)
    new = nn.Linear(linear.in_features, len(rows), bias=linear.bias is not None)
    new = new.to(device=linear.weight.device, dtype=linear.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(linear.weight.index_select(0, index))
        if linear.bias is not None:
            new.bias.copy_(linear.bias.index_select(0, index))
    return new


def _consumer(linear: nn.Linear, weight: torch.Tensor) -> nn.Linear:
    new = nn.Linear(weight.shape[1], weight.shape[0], bias=linear.bias is not None)
    new = new.to(device=linear.weight.device, dtype=linear.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight.to(new.weight))
        if linear.bias is not None:
            new.bias.copy_(linear.bias)
    return new


def prune_neurons(adapter: Any, layer: nn.Module, kept: np.ndarray, consumer: torch.Tensor) -> None:
    for name in adapter.spec.ffn_producers:
        adapter.set_linear(layer, name, _rows(adapter.linear(layer, name), kept))
    adapter.set_linear(layer, "down", _consumer(adapter.linear(layer, "down"), consumer))


def prune_heads(adapter: Any, layer: nn.Module, kept: np.ndarray, consumer: torch.Tensor) -> None:
    """Keep query heads `kept`; for multi-head attention their k, v heads too (GQA keeps all kv)."""
    g = adapter.geometry
    dh, current = g.head_dim, adapter.block_shape(layer)
    q_rows = (kept[:, None] * dh + np.arange(dh)[None, :]).ravel()
    if g.group_size > 1:
        kv_rows = np.arange(current.kv_heads * dh)
        kv_heads = current.kv_heads
    else:
        kv_rows, kv_heads = q_rows, len(kept)
    for name, rows in attention_rows(adapter.spec, current, dh, q_rows, kv_rows).items():
        adapter.set_linear(layer, name, _rows(adapter.linear(layer, name), rows))
    adapter.set_linear(layer, "o", _consumer(adapter.linear(layer, "o"), consumer))
    adapter.set_heads(layer, len(kept), kv_heads)


def attention_rows(
    spec: ArchSpec, current: BlockShape, head_dim: int, q_rows: np.ndarray, kv_rows: np.ndarray
) -> dict[str, np.ndarray]:
    """The output rows each attention producer keeps, given the kept rows of q and of k (= of v).

    A fused qkv weight is [q | k | v] (`core.archs.fused_qkv_offsets`); under grouped-query
    attention k and v are narrower than q, so v does not start at 2·heads·d_h.
    """
    if not spec.fused_qkv:
        return {"q": q_rows, "k": kv_rows, "v": kv_rows}
    _, k_start, v_start = fused_qkv_offsets(current.heads, current.kv_heads, head_dim)
    return {"qkv": np.concatenate([q_rows, k_start + kv_rows, v_start + kv_rows])}

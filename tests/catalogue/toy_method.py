"""A toy method, the way a new method is added: one module, registered in one place.

Loaded as a pytest plugin (`-p tests.catalogue.toy_method`) or imported, it registers `toy` in the
catalogue: keep the first units of every block, uniformly, slicing the consumer without correction.
Nothing else in the repository names it; tests/catalogue/test_toy_method.py checks that it shows
up in the CLI, the API schema, capabilities and the engine contract tests all the same.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from core import methods as catalogue
from core.methods import StructuredParams
from workers.compression.calibration import BlockStats
from workers.compression.methods.structured import StructuredMethod


class ToyParams(StructuredParams):
    allocation: Literal["auto", "global", "uniform"] = "uniform"
    offset: int = Field(default=0, ge=0, description="Unused; shows a parameter of the toy's own.")


class ToyMethod(StructuredMethod):
    """Keeps the first `keep` neurons and heads (of each kv group under GQA)."""

    name = "toy"
    Params = ToyParams

    @property
    def needs_data(self) -> bool:
        return False

    def select_neurons(
        self, layer: nn.Module, stats: BlockStats, keep: int
    ) -> tuple[np.ndarray, torch.Tensor, Any]:
        down = self.adapter.linear(layer, "down").weight.detach()
        return np.arange(keep), down[:, :keep], None

    def select_heads(
        self, layer: nn.Module, stats: BlockStats, keep: int
    ) -> tuple[np.ndarray, torch.Tensor, Any]:
        g = self.geometry
        if g.group_size > 1:
            per_group = keep // g.kv_heads
            kept = (np.arange(per_group)[None, :] + np.arange(g.kv_heads)[:, None] * g.group_size).ravel()
        else:
            kept = np.arange(keep)
        dims = (kept[:, None] * g.head_dim + np.arange(g.head_dim)[None, :]).ravel()
        o = self.adapter.linear(layer, "o").weight.detach()
        return kept, o[:, torch.as_tensor(dims, device=o.device)], None


INFO = catalogue.register(catalogue.MethodInfo(
    name="toy",
    description="keeps the first heads and neurons of every block (a test of the catalogue)",
    params=ToyParams,
    implementation=ToyMethod,
    structures=("heads", "neurons"),
    data="none",
))

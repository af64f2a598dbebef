"""The shared driver of the methods that replace block Linears by factorised kinds (`core.kinds`).

A factorising method says three things about one matrix W (out × in, its current shape in this
block) and the Gram G of its calibration inputs (None when the method runs data-free):

- `menu(weight, gram)`: the specs it could replace W with, each with its relative output error
  ‖(W − Ŵ)·X‖² / ‖W·X‖² (‖W − Ŵ‖² / ‖W‖² data-free), the allocator's one currency;
- `fit(weight, gram, module)`: fill the factors of a module built for a chosen spec (the driver
  builds it and copies the bias);
- (in its parameters, torch-free, `core.methods`) `cheapest(out, in)`: the fewest-MAC spec it
  can build on that shape (None: it cannot), which bounds the reachable target before any compute,
  in the API's estimates and in the engine alike.

The driver adds the dense option (error 0) to every menu, keeps a matrix dense when the family
has nothing cheaper for it (and says so in the report: `kept_dense`), and allocates the budget
over every matrix of every block at once with `budget.lagrangian` (least total error for the MACs).
Staged like `svd`: menus come from one dense planning pass; each block is fitted on the inputs
produced by the already compressed blocks.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import torch
from torch import nn

from core.errors import BudgetInfeasible
from core.kinds import Dense, LinearKind
from core.macs import BlockShape, block_macs, dense_shape, least_block_macs
from core.methods import FactorizedParams
from workers.compression import budget, linears
from workers.compression.calibration import BlockStats
from workers.compression.methods.base import Method

Choice = tuple[LinearKind, float]  # a spec and its relative output error


def relative_output_error(weight: torch.Tensor, approx: torch.Tensor, gram: torch.Tensor | None) -> float:
    """tr(E·G·Eᵀ) / tr(W·G·Wᵀ), E = W − Ŵ (G = I without a Gram), in float64."""
    w = weight.detach().double()
    e = w - approx.double()
    if gram is None:
        return float(e.pow(2).sum() / w.pow(2).sum().clamp_min(1e-300))
    g = gram.double().to(w.device)
    return float(((e @ g) * e).sum() / ((w @ g) * w).sum().clamp_min(1e-300))


class FactorizedMethod(Method):
    params: FactorizedParams
    PLANNING_STATE = ("menus", "kept_dense")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.menus: dict[int, dict[str, list[budget.Option]]] = {}
        self.kept_dense: dict[str, str] = {}

    # ----- what a family implements -------------------------------------------------------
    @abstractmethod
    def menu(self, weight: torch.Tensor, gram: torch.Tensor | None) -> list[Choice]: ...

    @abstractmethod
    def fit(self, weight: torch.Tensor, gram: torch.Tensor | None, module: nn.Module) -> None:
        """Fill the factors of `module` (built for its spec, on W's device and dtype) from W."""

    def cheapest(self, out_features: int, in_features: int) -> LinearKind | None:
        return self.params.cheapest(out_features, in_features)

    def keeps_dense_option(self) -> bool:
        """Whether the dense matrix is on every menu (a fixed-structure setting may leave it off)."""
        return self.params.keeps_dense()

    # ----- the Method interface -----------------------------------------------------------
    @property
    def needs_data(self) -> bool:
        return self.params.activation_aware

    @property
    def needs_planning_pass(self) -> bool:
        return self.params.activation_aware

    def observed(self, layer: nn.Module) -> list[tuple[str, nn.Module]]:
        a = self.adapter
        return [(n, a.linear(layer, n)) for n in a.spec.observed_inputs]  # one Gram per distinct input

    def resolved(self) -> dict[str, Any]:
        return {"kept_dense": dict(self.kept_dense)} if self.kept_dense else {}

    def gram(self, stats: BlockStats | None, name: str) -> torch.Tensor | None:
        if stats is None or not self.needs_data:
            return None
        return stats.grams[self.adapter.spec.input_of(name)].mean()

    def least_block_macs(self) -> int:
        """The fewest block MACs this method can reach on the model as it is (shapes only)."""
        shapes = [self.adapter.block_shape(layer) for layer in self.adapter.layers]
        return least_block_macs(self.geometry, shapes, self.params, self.seq_len)

    def observe_plan(self, index: int, layer: nn.Module, stats: BlockStats) -> None:
        self.menus[index] = self._block_menus(index, layer, stats)

    def _block_menus(self, index: int, layer: nn.Module,
                     stats: BlockStats | None) -> dict[str, list[budget.Option]]:
        L, out = self.seq_len, {}
        for name in self.adapter.spec.linears:
            weight = self.adapter.weight(layer, name)
            m, n = weight.shape
            dense = Dense(m, n)
            options = [budget.Option(L * spec.macs_per_token(), err, spec) for spec, err in
                       self.menu(weight, self.gram(stats, name))]
            if self.keeps_dense_option():
                options = [o for o in options if o.macs < dense.macs(L)]
                if not options:
                    self.kept_dense[f"{self.adapter.layer_path(index)}.{self.adapter.spec.linears[name]}"] = (
                        f"{self.name} has no form of a {m}×{n} matrix with fewer MACs than dense"
                    )
                options.append(budget.Option(dense.macs(L), 0.0, dense))
            out[name] = options
        return out

    def plan(self, mac_target: float) -> list[BlockShape]:
        g, L, n = self.geometry, self.seq_len, self.geometry.num_layers
        total = mac_target * n * block_macs(g, dense_shape(g), L)
        attention = sum(2 * L * L * g.head_dim * self.adapter.block_shape(layer).heads
                        for layer in self.adapter.layers)
        keys, menus = [], []
        for i, layer in enumerate(self.adapter.layers):
            block = self.menus.get(i) or self._block_menus(i, layer, None)
            for name, menu in block.items():
                keys.append((i, name))
                menus.append(menu)
        try:
            # aim within half the engine's tolerance of the target (pair moves for coarse menus)
            chosen = budget.lagrangian(menus, total - attention, slack=0.005 * total / mac_target)
        except BudgetInfeasible as exc:
            raise BudgetInfeasible(
                f"method {self.name!r} cannot reach mac_ratio {mac_target} on this model ({exc})",
                field="target.mac_ratio",
            ) from None
        factors: list[dict[str, LinearKind]] = [{} for _ in range(n)]
        for (i, name), option in zip(keys, chosen, strict=True):
            factors[i][name] = option.choice
        return [self.adapter.block_shape(layer).with_factors(f)
                for layer, f in zip(self.adapter.layers, factors, strict=True)]

    def compress_block(
        self, index: int, layer: nn.Module, stats: BlockStats, shape: BlockShape
    ) -> dict[str, Any]:
        kinds: dict[str, Any] = {}
        errors: dict[str, float] = {}
        for name, spec in shape.factors.items():
            dense = self.adapter.linear(layer, name)
            weight, gram = self.adapter.weight(layer, name), self.gram(stats, name)
            bias = linears.bias_of(dense)
            module = linears.build(spec, bias is not None, weight.dtype, weight.device)
            self.fit(weight, gram, module)
            linears.set_output_bias(module, bias)
            errors[name] = self.fitted_error(weight, module, gram)
            self.adapter.set_linear(layer, name, module)
            kinds[name] = spec.entry()
        return {"index": index, "linears": kinds, "relative_error": errors}

    def fitted_error(self, weight: torch.Tensor, module: nn.Module, gram: torch.Tensor | None) -> float:
        """The fitted module's relative output error (on the calibration Gram of this block)."""
        with torch.no_grad():
            eye = torch.eye(weight.shape[1], dtype=weight.dtype, device=weight.device)
            approx = module(eye).T  # the matrix the module applies (bias excluded below)
            bias = linears.bias_of(module)
            if bias is not None:
                approx = approx - bias.detach()[:, None]
        return relative_output_error(weight, approx, gram)

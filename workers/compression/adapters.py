"""Architecture adapters: where each family keeps its blocks, Linears and head counts.

The facts per architecture are data (`core.archs.ArchSpec`, one registry keyed by
`config.model_type`); this module applies them to a live torch model. The engine only ever talks
to a block through the names of `core.macs`: q, k, v (or the fused qkv of GPT-2), o, gate, up, down.

Every block Linear is an `nn.Linear` after `prepare()` (GPT-2's Conv1D is transposed into
one), or a module of a factorised Linear kind (`core.kinds`, `workers.compression.linears`).
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import nn

from core.archs import ArchSpec, fused_qkv_kv_heads, get_spec
from core.errors import InvalidArtifact, UnsupportedArchitecture
from core.kinds import KINDS, entry_keys, from_entry
from core.macs import BlockShape, Geometry
from workers.compression import linears


def set_module(root: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, name, module)


def linear_dims(module: nn.Module) -> tuple[int, int]:
    """(out_features, in_features) of a block Linear of any kind."""
    spec = linears.spec_of(module)
    return spec.out_features, spec.in_features


class ModelAdapter:
    """One model seen through its `ArchSpec`."""

    def __init__(self, model: nn.Module) -> None:
        config: Any = model.config
        self.model = model
        self.spec: ArchSpec = get_spec(str(config.model_type))
        self.geometry = Geometry.from_config(config.to_dict())
        base = cast(nn.Module, model.base_model)
        self.base_prefix = _prefix_of(model, base)
        self.layers_path = f"{self.base_prefix}{self.spec.layers}"

    @property
    def layers(self) -> nn.ModuleList:
        return self.model.get_submodule(self.layers_path)  # type: ignore[return-value]

    def layer_path(self, index: int) -> str:
        return f"{self.layers_path}.{index}"

    def linear(self, layer: nn.Module, name: str) -> nn.Module:
        return layer.get_submodule(self.spec.linears[name])

    def weight(self, layer: nn.Module, name: str) -> torch.Tensor:
        """The weight (out × in) of a dense block Linear."""
        module = self.linear(layer, name)
        if not isinstance(module, nn.Linear):
            raise TypeError(f"{name} is not a dense Linear: {type(module).__name__}")
        return module.weight

    def set_linear(self, layer: nn.Module, name: str, module: nn.Module) -> None:
        set_module(layer, self.spec.linears[name], module)

    def prepare(self) -> None:
        """Turn GPT-2's Conv1D (weight in×out) into nn.Linear (out×in), exactly."""
        for layer in self.layers:
            for name in self.spec.linears:
                module = self.linear(layer, name)
                if type(module).__name__ == "Conv1D":
                    self.set_linear(layer, name, _conv1d_to_linear(module))

    def block_shape(self, layer: nn.Module) -> BlockShape:
        """Read what a (possibly compressed) block keeps from its live modules."""
        g = self.geometry
        kinds = {name: linears.spec_of(self.linear(layer, name)) for name in self.spec.linears}
        heads = kinds["o"].in_features // g.head_dim
        if self.spec.fused_qkv:
            kv = fused_qkv_kv_heads(kinds["qkv"].out_features, heads, g.head_dim)
        else:
            kv = kinds["k"].out_features // g.head_dim
        shape = BlockShape(heads=heads, kv_heads=kv, neurons=kinds["down"].in_features)
        return shape.with_factors(kinds)

    def set_heads(self, layer: nn.Module, heads: int, kv_heads: int) -> dict[str, int]:
        attrs = self.spec.head_attrs(heads, kv_heads, self.geometry.head_dim)
        attention = layer.get_submodule(self.spec.attention)
        for key, value in attrs.items():
            setattr(attention, key, value)
        return attrs

    def manifest(self) -> dict[str, Any]:
        """Every block Linear's kind and shape, and head attributes: what the loader rebuilds."""
        modules: dict[str, dict[str, Any]] = {}
        attributes: dict[str, dict[str, int]] = {}
        for i, layer in enumerate(self.layers):
            for name, rel in self.spec.linears.items():
                module = self.linear(layer, name)
                entry = linears.spec_of(module).entry()
                entry["bias"] = linears.bias_of(module) is not None
                modules[f"{self.layer_path(i)}.{rel}"] = entry
            shape = self.block_shape(layer)
            attrs = self.spec.head_attrs(shape.heads, shape.kv_heads, self.geometry.head_dim)
            attributes[f"{self.layer_path(i)}.{self.spec.attention}"] = attrs
        return {"modules": modules, "attributes": attributes}


def _prefix_of(model: nn.Module, base: nn.Module) -> str:
    if base is model:
        return ""
    for name, module in model.named_modules():
        if module is base:
            return f"{name}."
    raise UnsupportedArchitecture("cannot locate the base model inside the model")


def _conv1d_to_linear(conv: nn.Module) -> nn.Linear:
    weight = cast(torch.Tensor, conv.weight)  # (in, out)
    bias = cast("torch.Tensor | None", conv.bias)
    linear = nn.Linear(weight.shape[0], weight.shape[1], bias=bias is not None)
    linear = linear.to(device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        linear.weight.copy_(weight.t())
        if bias is not None:
            linear.bias.copy_(bias)
    return linear


# The kinds of block Linear a manifest entry may describe, and the keys (besides "type") each has.
MODULE_KINDS: dict[str, frozenset[str]] = {kind: entry_keys(kind) for kind in KINDS}


def build_linear(entry: dict[str, Any], dtype: torch.dtype) -> nn.Module:
    """An uninitialised module of the kind and shape a manifest entry describes (on the default
    device: the loader builds on the meta device)."""
    if entry.get("type") not in KINDS:
        raise InvalidArtifact(f"unknown module type in manifest: {entry.get('type')!r}")
    return linears.build(from_entry(entry), bool(entry["bias"]), dtype)

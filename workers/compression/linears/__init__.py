"""The torch side of the Linear kinds (`core.kinds`): modules that execute each factorised form.

Each kind's spec names its module by import path; the module class has `from_spec(spec, bias,
dtype, device)` (uninitialised, for the loader and for fitting) and a `spec` property that reads
the kind back from the live module (what the MAC accounting, the manifest and the report use).
Dense block Linears stay `nn.Linear`.
"""

from __future__ import annotations

import importlib
from typing import Any, cast

import torch
from torch import nn

from core.kinds import KINDS, Dense, LinearKind, LowRank


def module_class(kind: str) -> Any:
    module_name, _, attr = KINDS[kind].module.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def spec_of(module: nn.Module) -> LinearKind:
    """The kind and factor shapes of a block Linear as it is now."""
    if isinstance(module, nn.Linear):
        return Dense(module.out_features, module.in_features)
    spec = getattr(module, "spec", None)
    if isinstance(spec, LinearKind):
        return spec
    if type(module) is nn.Sequential and len(module) == 2:  # a low-rank pair built by hand
        first, second = cast(nn.Linear, module[0]), cast(nn.Linear, module[1])
        return LowRank(second.out_features, first.in_features, first.out_features)
    raise TypeError(f"not a block Linear: {type(module).__name__}")


def bias_of(module: nn.Module) -> torch.Tensor | None:
    """The output bias of a block Linear of any kind."""
    if isinstance(module, nn.Linear):
        return module.bias
    if type(module) is nn.Sequential:
        return cast(nn.Linear, module[1]).bias
    return cast(torch.Tensor | None, module.output_bias)


def build(spec: LinearKind, bias: bool, dtype: torch.dtype, device: Any = None) -> nn.Module:
    """An uninitialised module of this kind (on the default device unless `device`)."""
    if isinstance(spec, Dense):
        return nn.Linear(spec.in_features, spec.out_features, bias=bias, dtype=dtype, device=device)
    return module_class(spec.kind).from_spec(spec, bias, dtype, device)  # type: ignore[no-any-return]


def set_output_bias(module: nn.Module, bias: torch.Tensor | None) -> None:
    target = bias_of(module)
    if bias is not None and target is not None:
        with torch.no_grad():
            target.copy_(bias.detach().to(target))

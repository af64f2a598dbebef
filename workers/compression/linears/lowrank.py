"""`lowrank`: W ≈ B·A executed as Linear(in → rank, no bias) then Linear(rank → out, bias).

An `nn.Sequential` subclass, so its weights are named `0.weight`, `1.weight`, `1.bias` as in the
artifacts written before Linear kinds had classes. The fit is `workers.compression.lowrank`.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import nn

from core.kinds import LowRank


class LowRankLinear(nn.Sequential):
    def __init__(self, in_features: int, rank: int, out_features: int, *, bias: bool,
                 dtype: torch.dtype | None = None, device: Any = None) -> None:
        super().__init__(
            nn.Linear(in_features, rank, bias=False, dtype=dtype, device=device),
            nn.Linear(rank, out_features, bias=bias, dtype=dtype, device=device),
        )

    @classmethod
    def from_spec(cls, spec: LowRank, bias: bool, dtype: torch.dtype, device: Any = None) -> LowRankLinear:
        return cls(spec.in_features, spec.rank, spec.out_features, bias=bias, dtype=dtype, device=device)

    @property
    def spec(self) -> LowRank:
        first, second = cast(nn.Linear, self[0]), cast(nn.Linear, self[1])
        return LowRank(second.out_features, first.in_features, first.out_features)

    @property
    def output_bias(self) -> torch.Tensor | None:
        return cast(nn.Linear, self[1]).bias

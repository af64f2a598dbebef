"""The interface every compression method implements.

The engine drives a method through three steps (the sparsegpt `add_batch → prune → free`
shape, lifted to whole blocks):

1. `observed(layer)`: the block Linears whose inputs the method needs statistics for
   (a Gram per input; empty for data-free methods).
2. `plan(target, planning_stats)`: a `BlockShape` per block that meets the MAC budget.
   Methods that allocate from data set `needs_planning_pass`; the engine then runs the dense
   model block by block once and hands the statistics of every block to `observe_plan`.
3. `compress_block(index, layer, stats, shape)`: rewrite one block in place to `shape`,
   from statistics of its inputs (staged: produced by the already compressed blocks), and
   return what it did for the report.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from torch import nn

from core.macs import BlockShape
from core.methods import MethodParams
from workers.compression.adapters import ModelAdapter
from workers.compression.calibration import BlockStats


class Method(ABC):
    name: ClassVar[str]
    Params: ClassVar[type[MethodParams]] = MethodParams
    # the attributes `observe_plan` fills: what another instance of the method (on a copy of the
    # model, for another target of a sweep) takes over with `adopt_plan` instead of a second pass
    PLANNING_STATE: ClassVar[tuple[str, ...]] = ()

    def __init__(self, params: MethodParams, adapter: ModelAdapter, seq_len: int) -> None:
        self.params = params
        self.adapter = adapter
        self.geometry = adapter.geometry
        self.seq_len = seq_len

    @property
    def needs_data(self) -> bool:
        return True

    @property
    def needs_planning_pass(self) -> bool:
        return False

    def observed(self, layer: nn.Module) -> list[tuple[str, nn.Module]]:
        return []

    def resolved(self) -> dict[str, Any]:
        """Choices the method made from the model (e.g. an `auto` parameter), for the report."""
        return {}

    def least_block_macs(self) -> int | None:
        """The fewest block MACs the method can reach, from the shapes alone (None: not known
        before planning). The engine refuses a lower target before any compute."""
        return None

    def observe_plan(self, index: int, layer: nn.Module, stats: BlockStats) -> None:  # noqa: B027
        """Record what planning needs from block `index` (dense statistics)."""

    def adopt_plan(self, other: Method) -> None:
        """Take over the planning statistics `other` (same method, same dense model) observed."""
        for name in self.PLANNING_STATE:
            setattr(self, name, getattr(other, name))

    @abstractmethod
    def plan(self, mac_target: float) -> list[BlockShape]: ...

    @abstractmethod
    def compress_block(
        self, index: int, layer: nn.Module, stats: BlockStats, shape: BlockShape
    ) -> dict[str, Any]: ...

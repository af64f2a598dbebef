"""The layer-by-layer calibration loop (the sparsegpt/gptq pattern).

Catch the first block's inputs (hidden states, masks, rotary embeddings: whatever the model
passes), then run one block at a time: collect statistics with forward pre-hooks, compress,
run the block again to feed the next. Statistics are Gram matrices accumulated in float64
(n×n, independent of the number of tokens), so memory never grows with tokens × layers.
Only the block being processed needs to be on the device; hidden states can live on the CPU.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from scipy.linalg import blas
from torch import nn

from core.errors import InvalidCalibrationData, UnsupportedArchitecture
from workers.compression.adapters import ModelAdapter

log = logging.getLogger(__name__)


class _Caught(Exception):
    """Raised by the capture hook to stop the forward pass at the first block."""


@dataclass
class BlockInputs:
    """What block 0 received for each calibration batch, and each batch's valid-token mask."""

    hidden: list[torch.Tensor]
    args: list[tuple[Any, ...]]
    kwargs: list[dict[str, Any]]
    masks: list[torch.Tensor]  # bool (B, T): real tokens (padding excluded from statistics)

    @property
    def num_tokens(self) -> int:
        return int(sum(int(m.sum()) for m in self.masks))

    def with_hidden(self, hidden: list[torch.Tensor]) -> BlockInputs:
        return BlockInputs(hidden, self.args, self.kwargs, self.masks)


class Gram:
    """Streaming XᵀX of a Linear's input over valid tokens.

    Rows are buffered into chunks of about `chunk` tokens; each chunk's product is formed
    in float32 with one symmetric rank-k update (syrk: half the flops of XᵀX) and added
    to a float64 accumulator, so precision does not degrade with the number of tokens.
    """

    def __init__(self, chunk: int = 4096) -> None:
        self.chunk = chunk
        # decompositions of this Gram a method may reuse while it lives (an unstaged sweep keeps the
        # dense Grams for every target): see InterpolativeMethod.neuron_factor
        self.memo: dict[Any, Any] = {}
        self.matrix: torch.Tensor | None = None
        self.rows = 0
        self._pending: list[torch.Tensor] = []
        self._pending_rows = 0

    def add(self, x: torch.Tensor, mask: torch.Tensor | None) -> None:
        self.memo.clear()
        x = x.detach()
        x = x[mask] if mask is not None and x.dim() == 3 else x.reshape(-1, x.shape[-1])
        self._pending.append(x.float())
        self._pending_rows += x.shape[0]
        self.rows += x.shape[0]
        if self._pending_rows >= self.chunk:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        x = torch.cat(self._pending)
        self._pending, self._pending_rows = [], 0
        if x.device.type == "cpu":
            upper = torch.from_numpy(blas.ssyrk(1.0, x.numpy(), trans=1, lower=0))
            update = (upper + upper.triu(1).T).double()
        else:
            update = (x.T @ x).double()
        self.matrix = update if self.matrix is None else self.matrix + update

    def mean(self) -> torch.Tensor:
        """XᵀX / rows: the scale no longer depends on how many tokens were seen."""
        self._flush()
        if self.matrix is None:
            raise InvalidCalibrationData("no calibration tokens reached this layer", field="calibration")
        return self.matrix / max(self.rows, 1)


@dataclass
class BlockStats:
    grams: dict[str, Gram] = field(default_factory=dict)


class Calibrator:
    """Runs calibration batches block by block on `device`, keeping activations on `store`."""

    def __init__(self, adapter: ModelAdapter, device: torch.device, store: torch.device) -> None:
        self.adapter = adapter
        self.device = device
        self.store = store
        self._mask: torch.Tensor | None = None

    @torch.no_grad()
    def capture(self, batches: list[dict[str, torch.Tensor]]) -> BlockInputs:
        """Run the model up to block 0 for every batch and keep what block 0 was given."""
        batches = repack(batches)
        if not batches:
            raise InvalidCalibrationData(
                "the calibration batches hold no tokens (every attention mask is zero)", field="calibration"
            )
        model, first = self.adapter.model, self.adapter.layers[0]
        record = BlockInputs([], [], [], [])

        def hook(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            record.hidden.append(args[0].to(self.store))
            record.args.append(args[1:])
            record.kwargs.append(kwargs)
            raise _Caught

        handle = first.register_forward_pre_hook(hook, with_kwargs=True)
        base = cast(nn.Module, model.base_model)  # nn.Module.__getattr__ is typed Tensor | Module
        try:
            for batch in batches:
                ids = batch["input_ids"].to(self.device)
                mask = batch["attention_mask"].to(self.device)
                try:
                    base(input_ids=ids, attention_mask=mask, **_no_cache(model))
                except _Caught:
                    pass
                record.masks.append(mask.bool())
        finally:
            handle.remove()
        if len(record.hidden) != len(batches):
            raise UnsupportedArchitecture(
                f"{type(model).__name__}: the forward pass did not reach the first block "
                f"({self.adapter.layer_path(0)}) for every calibration batch"
            )
        return record

    @torch.no_grad()
    def run(
        self,
        layer: nn.Module,
        inputs: BlockInputs,
        observe: Iterable[tuple[str, nn.Module]] = (),
        *,
        keep_outputs: bool = True,
    ) -> tuple[BlockStats, list[torch.Tensor]]:
        """Forward every batch through `layer`, collecting the input Gram of each observed module."""
        stats = BlockStats()
        handles = [self._observe(name, module, stats) for name, module in observe]
        outputs: list[torch.Tensor] = []
        try:
            for hidden, args, kwargs, mask in zip(
                inputs.hidden, inputs.args, inputs.kwargs, inputs.masks, strict=True
            ):
                self._mask = mask
                out = layer(hidden.to(self.device), *args, **kwargs)
                out = out[0] if isinstance(out, tuple) else out
                if keep_outputs:
                    outputs.append(out.to(self.store))
        finally:
            self._mask = None
            for handle in handles:
                handle.remove()
        return stats, outputs

    def _observe(self, name: str, module: nn.Module, stats: BlockStats) -> Any:
        gram = stats.grams.setdefault(name, Gram())

        def hook(_module: nn.Module, args: tuple[Any, ...]) -> None:
            gram.add(args[0], self._mask)

        return module.register_forward_pre_hook(hook)


def repack(
    batches: list[dict[str, torch.Tensor]], max_tokens: int = 8192, max_rows: int = 32
) -> list[dict[str, torch.Tensor]]:
    """Re-batch sequences by length so padding costs (almost) nothing.

    Sequences are independent, so regrouping them changes no statistic: every real token is
    still seen exactly once, padding is still excluded. Padding is moved to the right.
    """
    seqs = [
        ids[m.bool()] for b in batches for ids, m in zip(b["input_ids"], b["attention_mask"], strict=True)
    ]
    seqs = [s for s in seqs if s.numel()]
    seqs.sort(key=len, reverse=True)
    out: list[dict[str, torch.Tensor]] = []
    start = 0
    while start < len(seqs):
        width = len(seqs[start])
        rows = max(1, min(len(seqs) - start, max_rows, max_tokens // width))
        group = seqs[start : start + rows]
        ids = torch.zeros(len(group), width, dtype=torch.long)
        mask = torch.zeros(len(group), width, dtype=torch.long)
        for i, s in enumerate(group):
            ids[i, : len(s)], mask[i, : len(s)] = s, 1
        out.append({"input_ids": ids, "attention_mask": mask})
        start += rows
    return out


def _no_cache(model: nn.Module) -> dict[str, Any]:
    return {"use_cache": False} if getattr(model.config, "use_cache", None) is not None else {}


@contextmanager
def on_device(module: nn.Module, device: torch.device, home: torch.device) -> Iterator[nn.Module]:
    """Move one block to the device for its passes and back home afterwards."""
    if device == home:
        yield module
        return
    module.to(device)
    try:
        yield module
    finally:
        module.to(home)


def move_except_layers(adapter: ModelAdapter, device: torch.device) -> None:
    """Put everything but the blocks (embeddings, rotary tables, final norm) on `device`."""
    layers = set(adapter.layers.modules())
    for module in adapter.model.modules():
        if module in layers:
            continue
        for _, param in module.named_parameters(recurse=False):
            param.data = param.data.to(device)
        for name, buf in module.named_buffers(recurse=False):
            module._buffers[name] = buf.to(device)  # noqa: SLF001 (moving one module's own buffers)

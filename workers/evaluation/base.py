"""What every evaluation task shares: the result type, option checking, devices, batch encoding."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from core.errors import InvalidSpec
from workers.data import pad_id


@dataclass
class TaskResult:
    """metrics: the contract keys (perplexity, accuracy, spearman, latency_ms, ...) -> float.

    protocol: how the numbers were obtained (data path and sha256, lengths, counts); numbers from
    different protocols are not comparable, so the protocol always travels with them.
    """

    task: str
    metrics: dict[str, float]
    protocol: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Metrics at top level plus "protocol": the shape `pare evaluate --json` prints."""
        return {**self.metrics, "protocol": self.protocol}


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when available else 'cpu'; an unavailable CUDA request is an InvalidSpec."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InvalidSpec(f"device {device!r} requested but CUDA is not available")
    if device != "cpu" and not device.startswith("cuda"):
        raise InvalidSpec(f"device {device!r} is not one of auto, cpu, cuda, cuda:N")
    return device


def model_device(model: torch.nn.Module) -> torch.device:
    for parameter in model.parameters():
        return parameter.device
    return torch.device("cpu")


def forward_kwargs(module: torch.nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keep only the inputs module.forward accepts (Llama has no token_type_ids, BERT has)."""
    params = inspect.signature(module.forward).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        accepted = {k for k in batch if k != "token_type_ids" or "token_type_ids" in params}
    else:
        accepted = set(params)
    return {k: v for k, v in batch.items() if k in accepted}


def encode(
    tokenizer: Any,
    texts: list[str],
    pairs: list[str] | None = None,
    *,
    max_length: int,
    device: torch.device | str = "cpu",
) -> dict[str, torch.Tensor]:
    """Tokenize (with special tokens, truncated) and right-pad by hand.

    Padding by hand works for tokenizers without a pad token (GPT-2, Llama): the pad id falls back
    to eos, and the attention mask keeps padded positions out of every result.
    """
    args = (texts, pairs) if pairs is not None else (texts,)
    encoded = tokenizer(*args, truncation=True, max_length=max_length, add_special_tokens=True)
    width = max(len(ids) for ids in encoded["input_ids"])
    fill = {"input_ids": pad_id(tokenizer), "attention_mask": 0, "token_type_ids": 0}
    batch = {}
    for key, value in fill.items():
        if key in encoded:
            rows = [list(r) + [value] * (width - len(r)) for r in encoded[key]]
            batch[key] = torch.tensor(rows, dtype=torch.long, device=device)
    return batch


def length_order(texts: list[str]) -> list[int]:
    """Indices sorted by text length (longest first) so batches pad little; results are reordered."""
    return sorted(range(len(texts)), key=lambda i: -len(texts[i]))


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run with `threads` intra-op threads, then restore. On a shared, oversubscribed CPU one thread
    is often faster than two: OpenMP workers spin while waiting for a core."""
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)

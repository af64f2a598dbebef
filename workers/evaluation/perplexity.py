"""Perplexity and next-token accuracy of a causal language model (GPTQ / SparseGPT protocol).

The whole text (a .txt file as stored; other sources' documents joined by "\\n") is tokenized
once without special tokens, optionally cut to a fixed prefix of `max_tokens`, and split into
windows of `seq_len` tokens:
- stride == seq_len (default): non-overlapping windows, the tail that does not fill one is dropped;
  each window scores its seq_len - 1 predicted tokens.
- stride < seq_len: windows start every `stride` tokens; the first window scores all its
  predictions, later ones only their last `stride` tokens (each token is scored once, with
  at least seq_len - stride tokens of context). This gives lower numbers: not comparable.

    perplexity = exp(mean NLL over all scored tokens)
    token_accuracy = fraction of scored tokens whose argmax prediction is the token

Logits are computed a chunk of positions at a time from the final hidden states, so a 49k
vocabulary at 512 tokens never materializes [B, T, V] in full.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import torch
import torch.nn.functional as F

from core.errors import InvalidCalibrationData, InvalidSpec
from core.evaluation import PerplexityOptions, part_indices, part_protocol
from workers.data import DataSource, file_sha256, load_text
from workers.evaluation.base import TaskResult, model_device


def window_plan(num_tokens: int, seq_len: int, stride: int) -> list[tuple[int, int]]:
    """(start, first scored target index inside the window) for every window of seq_len tokens."""
    if stride >= seq_len:
        return [(i * seq_len, 1) for i in range(num_tokens // seq_len)]
    plan = [(0, 1)] if num_tokens >= seq_len else []
    start = stride
    while start + seq_len <= num_tokens:
        plan.append((start, seq_len - stride))
        start += stride
    return plan


def _hidden_and_head(model: torch.nn.Module) -> tuple[torch.nn.Module | None, torch.nn.Module | None]:
    getter = getattr(model, "get_output_embeddings", None)
    head = getter() if callable(getter) else None
    body = getattr(model, "base_model", None)
    if head is None or body is None or body is model:
        return None, None
    return body, head


@torch.inference_mode()
def score_windows(
    model: torch.nn.Module, ids: torch.Tensor, first: torch.Tensor, logits_chunk: int
) -> tuple[float, int, int]:
    """Sum of NLL, correct top-1 count and scored count for windows ids: Long[B, T].

    Target t of row b (predicted from positions < t) is scored when t >= first[b].
    """
    mask = torch.ones_like(ids)
    body, head = _hidden_and_head(model)
    if body is not None:
        hidden = body(input_ids=ids, attention_mask=mask).last_hidden_state
    else:
        hidden = None
        full_logits = model(input_ids=ids, attention_mask=mask).logits
    length = ids.shape[1]
    nll, correct, count = 0.0, 0, 0
    for begin in range(int(first.min()) - 1, length - 1, logits_chunk):
        end = min(begin + logits_chunk, length - 1)
        if hidden is not None and head is not None:
            logits = head(hidden[:, begin:end])
        else:
            logits = full_logits[:, begin:end]
        logits = logits.float()
        targets = ids[:, begin + 1 : end + 1]
        positions = torch.arange(begin + 1, end + 1, device=ids.device)
        scored = positions[None, :] >= first[:, None].to(ids.device)
        losses = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
        nll += float(losses[scored].double().sum())
        correct += int((logits.argmax(-1) == targets)[scored].sum())
        count += int(scored.sum())
    return nll, correct, count


def evaluate_perplexity(
    model: torch.nn.Module, tokenizer: Any, data: DataSource | None, options: dict[str, Any]
) -> TaskResult:
    opts = PerplexityOptions.parse("perplexity", options)
    if data is None:
        raise InvalidSpec("task 'perplexity' needs --data (a text file or dataset)")
    stride = opts.stride or opts.seq_len
    if stride > opts.seq_len:
        raise InvalidSpec(f"stride {stride} is larger than seq_len {opts.seq_len}")
    text = load_text(data)
    all_ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
    ids = all_ids[: opts.max_tokens] if opts.max_tokens else all_ids
    plan = window_plan(len(ids), opts.seq_len, stride)
    plan = [plan[i] for i in part_indices(len(plan), opts)]
    if not plan:
        raise InvalidCalibrationData(
            f"{data.describe()}: too few tokens ({len(ids)}) for one window of seq_len={opts.seq_len}"
        )
    device = model_device(model)
    tokens = torch.tensor(ids, dtype=torch.long)
    nll, correct, count = 0.0, 0, 0
    for b in range(0, len(plan), opts.batch_size):
        group = plan[b : b + opts.batch_size]
        windows = torch.stack([tokens[s : s + opts.seq_len] for s, _ in group]).to(device)
        first = torch.tensor([f for _, f in group])
        part = score_windows(model, windows, first, opts.logits_chunk)
        nll, correct, count = nll + part[0], correct + part[1], count + part[2]
    mean_nll = nll / count
    protocol = {
        "name": "non-overlapping windows (GPTQ)" if stride == opts.seq_len else "strided windows",
        "data": data.describe(),
        "data_sha256": file_sha256(data.path) if data.path else None,
        "text_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        "text": "file as stored" if str(data.path).endswith(".txt") else "texts joined by \\n",
        "add_special_tokens": False,
        "seq_len": opts.seq_len,
        "stride": stride,
        "max_tokens": opts.max_tokens,
        "num_tokens": len(ids),
        "num_tokens_text": len(all_ids),
        "num_windows": len(plan),
        "num_scored_tokens": count,
        **part_protocol(opts),
    }
    protocol["mean_nll"] = mean_nll
    metrics = {"perplexity": math.exp(mean_nll), "token_accuracy": correct / count}
    return TaskResult("perplexity", metrics, protocol)

"""Measured speed: latency, throughput and peak memory of a forward pass (MACs are only a prediction).

Protocol of `compare_latency`:
- the same inputs for both models: Long[batch_size, seq_len] token ids from a seeded generator,
  attention mask of ones; torch.inference_mode; the thread count is left as it is;
- `warmup` untimed runs each, then timed runs interleaved A B A B ... so that drift (turbo,
  other processes, thermal) hits both models alike; at least `iters` runs each and at least
  `min_seconds` of timed work per model, at most `max_iters`;
- latency_ms = median of the timed runs; throughput = batch_size / median seconds;
  speedup = baseline median / compressed median (> 1: the compressed model is faster).

peak_memory_mb = bytes of the model's own parameters and buffers + the peak transient growth of one
forward pass over what was allocated before it (activations and workspaces). On CUDA the growth is
torch.cuda.max_memory_allocated after reset_peak_memory_stats; on CPU it is the growth of the
process' peak resident set (VmHWM, reset through /proc/self/clear_refs after glibc's malloc_trim
returned the pages freed by earlier passes). Both models stay resident during a comparison, so
counting only each model's own tensors keeps the figures comparable. Where VmHWM cannot be reset,
the CPU growth is reported as 0 and the protocol says so.
"""

from __future__ import annotations

import ctypes
import gc
import statistics
import time
from pathlib import Path
from typing import Any, cast

import torch

from core.evaluation import LatencyOptions
from workers.evaluation.base import TaskResult, model_device

MB = 1024 * 1024


def random_inputs(
    model: torch.nn.Module, *, batch_size: int, seq_len: int, seed: int, vocab_size: int | None = None
) -> dict[str, torch.Tensor]:
    vocab = vocab_size or int(cast(Any, model).config.vocab_size)
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (batch_size, seq_len), generator=gen)
    device = model_device(model)
    return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> float:
    device = inputs["input_ids"].device
    _sync(device)
    start = time.perf_counter()
    model(**inputs)
    _sync(device)
    return time.perf_counter() - start


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Return freed heap pages to the OS (glibc malloc_trim), then reset VmHWM to the current RSS
    (Linux >= 4.0: write 5 to /proc/self/clear_refs). Without the trim, memory freed by earlier
    forward passes stays resident and the next pass's growth would read as zero."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def model_bytes(model: torch.nn.Module) -> int:
    tensors = list(model.parameters()) + list(model.buffers())
    unique = {t.data_ptr(): t.numel() * t.element_size() for t in tensors}  # tied weights once
    return sum(unique.values())


@torch.inference_mode()
def peak_memory_mb(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> tuple[float, str]:
    """(model tensors + peak transient growth of one forward, in MiB; how the growth was measured)."""
    device = inputs["input_ids"].device
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        model(**inputs)
        torch.cuda.synchronize(device)
        growth, how = torch.cuda.max_memory_allocated(device) - before, "cuda max_memory_allocated"
    elif _reset_peak_rss() and (before_kb := _status_kb("VmRSS")) is not None:
        model(**inputs)
        growth, how = max(0, ((_status_kb("VmHWM") or 0) - before_kb) * 1024), "cpu VmHWM growth"
    else:
        growth, how = 0, "cpu growth unavailable (parameters only)"
    return (model_bytes(model) + growth) / MB, how


def _summary(times: list[float], batch_size: int) -> dict[str, float]:
    median = statistics.median(times)
    return {"latency_ms": median * 1000, "throughput": batch_size / median}


@torch.inference_mode()
def _interleaved(
    models: list[torch.nn.Module], inputs: list[dict[str, torch.Tensor]], opts: LatencyOptions
) -> list[list[float]]:
    for model, x in zip(models, inputs, strict=True):
        for _ in range(opts.warmup):
            model(**x)
    times: list[list[float]] = [[] for _ in models]
    while len(times[0]) < opts.max_iters:
        for slot, (model, x) in enumerate(zip(models, inputs, strict=True)):
            times[slot].append(_timed(model, x))
        if len(times[0]) >= opts.iters and all(sum(t) >= opts.min_seconds for t in times):
            break
    return times


def _protocol(opts: LatencyOptions, device: torch.device, iterations: int, memory: str) -> dict[str, Any]:
    return {
        "batch_size": opts.batch_size,
        "seq_len": opts.seq_len,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "warmup": opts.warmup,
        "timed_iterations": iterations,
        "min_seconds": opts.min_seconds,
        "statistic": "median",
        "inputs": f"random token ids, torch.Generator seed {opts.seed}",
        "peak_memory": f"model tensors + {memory}",
    }


def compare_latency(
    baseline_model: torch.nn.Module,
    compressed_model: torch.nn.Module,
    *,
    batch_size: int = 8,
    seq_len: int = 128,
    device: str | None = None,
    warmup: int = 3,
    iters: int = 20,
    min_seconds: float = 2.0,
    vocab_size: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Time two models on identical inputs, interleaved; see the module docstring for the protocol.

    Returns {"baseline": {latency_ms, throughput, peak_memory_mb}, "compressed": {...},
    "speedup": float, "protocol": {...}}. Models are moved to `device` when it is given.
    """
    opts = LatencyOptions(
        batch_size=batch_size, seq_len=seq_len, warmup=warmup, iters=iters, min_seconds=min_seconds, seed=seed
    )
    models = [baseline_model, compressed_model]
    if device is not None:
        models = [m.to(device) for m in models]
    vocab = vocab_size or min(int(cast(Any, m).config.vocab_size) for m in models)
    inputs = [
        random_inputs(m, batch_size=batch_size, seq_len=seq_len, seed=seed, vocab_size=vocab) for m in models
    ]
    times = _interleaved(models, inputs, opts)
    result: dict[str, Any] = {}
    for name, model, x, t in zip(("baseline", "compressed"), models, inputs, times, strict=True):
        memory, how = peak_memory_mb(model, x)
        result[name] = {**_summary(t, batch_size), "peak_memory_mb": memory}
    result["speedup"] = result["baseline"]["latency_ms"] / result["compressed"]["latency_ms"]
    result["protocol"] = _protocol(opts, model_device(models[0]), len(times[0]), how)
    return result


def evaluate_latency(
    model: torch.nn.Module, tokenizer: Any, data: Any, options: dict[str, Any]
) -> TaskResult:
    """Single-model variant for run_task("latency", ...): latency_ms, throughput, peak_memory_mb."""
    opts = LatencyOptions.parse("latency", options)
    inputs = random_inputs(model, batch_size=opts.batch_size, seq_len=opts.seq_len, seed=opts.seed)
    (times,) = _interleaved([model], [inputs], opts)
    memory, how = peak_memory_mb(model, inputs)
    metrics = {**_summary(times, opts.batch_size), "peak_memory_mb": memory}
    return TaskResult("latency", metrics, _protocol(opts, model_device(model), len(times), how))

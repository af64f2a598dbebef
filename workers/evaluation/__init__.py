"""Evaluation tasks behind one entry point, `run_task`; each result carries its protocol.

Adding a task is one module with a function (model, tokenizer, data, options) -> TaskResult and
one line in `_REGISTRY`. Metric keys are a contract shared with the service and the benchmarks:
perplexity, token_accuracy, accuracy, macro_f1, spearman, latency_ms, throughput, peak_memory_mb,
speedup.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from core.errors import InvalidSpec
from workers.data import DataSource
from workers.evaluation.base import TaskResult, resolve_device
from workers.evaluation.classification import evaluate_classification
from workers.evaluation.latency import compare_latency, evaluate_latency
from workers.evaluation.perplexity import evaluate_perplexity
from workers.evaluation.sts import evaluate_sts

TaskFn = Callable[[torch.nn.Module, Any, DataSource | None, dict[str, Any]], TaskResult]

_REGISTRY: dict[str, TaskFn] = {
    "perplexity": evaluate_perplexity,
    "classification": evaluate_classification,
    "sts": evaluate_sts,
    "latency": evaluate_latency,
}
TASKS: tuple[str, ...] = tuple(_REGISTRY)

__all__ = ["TASKS", "TaskResult", "compare_latency", "run_task"]


def run_task(
    task: str,
    model: torch.nn.Module,
    tokenizer: Any,
    *,
    data: DataSource | None,
    options: dict[str, Any] | None = None,
    device: str = "cpu",
) -> TaskResult:
    """Evaluate `model` on one task; the model is moved to `device` ("auto" picks CUDA if present).

    The protocol gains "task", "device" and "seconds" (wall time of the evaluation).
    """
    if task not in _REGISTRY:
        raise InvalidSpec(f"unknown evaluation task {task!r}; tasks: {', '.join(TASKS)}", field="task")
    target = resolve_device(device)
    model.to(target)
    model.eval()
    start = time.perf_counter()
    result = _REGISTRY[task](model, tokenizer, data, dict(options or {}))
    result.protocol = {
        "task": task,
        "device": target,
        **result.protocol,
        "seconds": time.perf_counter() - start,
    }
    return result

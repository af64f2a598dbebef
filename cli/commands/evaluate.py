"""`pare evaluate`: one evaluation task on a model, a model folder or a compressed artifact.

torch and transformers are imported inside the command body, so `pare --help` stays fast.
With --json the last line printed is one JSON object: the metrics under their contract keys
(perplexity, token_accuracy, accuracy, macro_f1, spearman, latency_ms, throughput, peak_memory_mb,
speedup) plus "protocol".
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from core.errors import PareError

F = TypeVar("F", bound=Callable[..., Any])

TASK_NAMES = ("perplexity", "classification", "sts", "latency")  # = workers.evaluation.TASKS (tested)


def domain_errors(command: F) -> F:
    """Turn a PareError into one line on stderr and exit status 2, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except PareError as exc:
            click.echo(f"error ({exc.code}): {exc}", err=True)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


def read_compression_json(ref: str) -> dict[str, Any] | None:
    """The artifact's compression.json when `ref` is a compressed model folder, else None."""
    report = Path(ref).expanduser() / "compression.json"
    return json.loads(report.read_text()) if report.is_file() else None


def quiet_libraries() -> None:
    """No progress bars from transformers / huggingface_hub: stdout and stderr stay line-oriented."""
    from huggingface_hub.utils import disable_progress_bars
    from transformers.utils import logging as hf_logging

    disable_progress_bars()
    hf_logging.disable_progress_bar()


def load_any(ref: str, *, revision: str | None, device: str) -> tuple[Any, Any]:
    """(model, tokenizer) of a hub id, a model folder, or a compression engine artifact."""
    if read_compression_json(ref) is not None:
        try:
            from workers.compression.artifacts import load_compressed
        except ImportError as exc:
            raise PareError(
                f"{ref} is a compressed artifact, but the compression engine is not installed"
            ) from exc
        model, tokenizer = load_compressed(Path(ref).expanduser())
        return model.to(device).eval(), tokenizer
    from workers.models import load_model

    return load_model(ref, revision=revision, device=device)


def _options(**given: int | None) -> dict[str, Any]:
    """The options given on the command line; a task rejects one it does not take, by name."""
    return {k: v for k, v in given.items() if v is not None}


def _latency_pair(
    model_ref: str, baseline: str | None, revision: str | None, device: str, options: dict[str, Any]
) -> dict[str, Any] | None:
    """Baseline-vs-model latency when a baseline is given or recorded in compression.json."""
    report = read_compression_json(model_ref)
    source = (report or {}).get("source", {})
    base_revision = None if baseline else source.get("revision")
    baseline = baseline or source.get("model_id")
    if baseline is None:
        return None
    from core.evaluation import LatencyOptions
    from workers.evaluation import compare_latency

    opts = LatencyOptions.parse("latency", options)
    base_model, _ = load_any(baseline, revision=base_revision, device=device)
    model, _ = load_any(model_ref, revision=revision, device=device)
    result = compare_latency(
        base_model,
        model,
        batch_size=opts.batch_size,
        seq_len=opts.seq_len,
        device=device,
        warmup=opts.warmup,
        iters=opts.iters,
        min_seconds=opts.min_seconds,
    )
    metrics = {**result["compressed"], "speedup": result["speedup"], "baseline": result["baseline"]}
    return {
        **metrics,
        "protocol": {"task": "latency", "baseline": baseline, "model": model_ref, **result["protocol"]},
    }


def _echo_human(payload: dict[str, Any]) -> None:
    for key, value in payload.items():
        if key == "protocol":
            continue
        click.echo(f"{key}: {value:.6g}" if isinstance(value, float) else f"{key}: {value}")
    for key, value in payload["protocol"].items():
        click.echo(f"  {key}: {value}")


@click.command("evaluate")
@click.option(
    "--model", "model_ref", required=True, help="Hub id (HF cache), model folder or compressed artifact."
)
@click.option("--task", type=click.Choice(TASK_NAMES), required=True)
@click.option(
    "--data", default=None, help="PATH, PATH:text_col[:label_col] or hf:ORG/NAME[:config][@split][#col]."
)
@click.option(
    "--seq-len", type=int, default=None, help="perplexity window (512) / latency sequence length (128)."
)
@click.option(
    "--max-tokens", type=int, default=None, help="perplexity: evaluate this fixed prefix of tokens."
)
@click.option("--stride", type=int, default=None, help="perplexity: window stride (default seq-len).")
@click.option("--batch-size", type=int, default=None)
@click.option("--max-length", type=int, default=None, help="classification / sts truncation length.")
@click.option("--iters", type=int, default=None, help="latency: minimum timed iterations per model.")
@click.option("--baseline", default=None, help="latency: dense model to compare against.")
@click.option("--revision", default=None, help="Hub revision (branch or sha) of --model.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object as the last line.")
@domain_errors
def evaluate(
    model_ref: str,
    task: str,
    data: str | None,
    seq_len: int | None,
    max_tokens: int | None,
    stride: int | None,
    batch_size: int | None,
    max_length: int | None,
    iters: int | None,
    baseline: str | None,
    revision: str | None,
    device: str,
    as_json: bool,
) -> None:
    """Evaluate a model on one task and print the metrics with their protocol."""
    from workers.data import DataSource
    from workers.evaluation import run_task
    from workers.evaluation.base import resolve_device

    quiet_libraries()
    target = resolve_device(device)
    options = _options(
        seq_len=seq_len,
        max_tokens=max_tokens,
        stride=stride,
        batch_size=batch_size,
        max_length=max_length,
        iters=iters,
    )
    source = DataSource.parse(data) if data else None
    payload = _latency_pair(model_ref, baseline, revision, target, options) if task == "latency" else None
    if payload is None:
        model, tokenizer = load_any(model_ref, revision=revision, device=target)
        result = run_task(task, model, tokenizer, data=source, options=options, device=target)
        payload = {**result.to_json(), "protocol": {"model": model_ref, **result.protocol}}
    if as_json:
        click.echo(json.dumps(payload, default=str))
    else:
        _echo_human(payload)


COMMANDS: list[click.Command] = [evaluate]

"""`pare compress`: one compression job from the command line, the same pipeline as a worker's.

    pare compress --model MODEL --method METHOD --mac-target 0.5 \\
      --calibration PATH [--num-samples 128] [--seq-len 128] [--reference-seq-len L] \\
      [--eval TASK:PATH ...] [--device auto|cpu|cuda] [--seed 0] --out DIR [--json]

`--mac-target 0.9,0.7,0.5` is a sweep (one model per ratio, in DIR/mac-0.9/ ...); instead of a
ratio, `--max-drop 0.01 --metric spearman` or `--max-ratio 1.1 --metric perplexity` searches for
the smallest model within that bound of the dense one (core.targets).

With --json the last line printed is one JSON object (mac_ratio, mac_ratio_model,
params_before, params_after, seconds, artifact, metrics, ...; `points` for a sweep, `search` for a
search). Progress goes to stderr.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from cli.commands.evaluate import domain_errors
from cli.options import MAC_TARGETS, POSITIVE, MethodChoice, target_object, target_options
from core import methods as catalogue
from core import targets
from core.errors import InvalidSpec


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_assignments(items: tuple[str, ...], what: str) -> dict[str, Any]:
    """KEY=VALUE pairs, values parsed as JSON when they are JSON (1e-2, true, "x")."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidSpec(f"{what} must look like KEY=VALUE, got {item!r}", field=what)
        out[key.strip()] = _value(value)
    return out


def parse_eval(items: tuple[str, ...], options: tuple[str, ...]) -> tuple[Any, ...]:
    """--eval TASK:PATH (PATH optional for latency) and --eval-opt TASK.KEY=VALUE."""
    from workers.data import DataSource
    from workers.pipeline import EvalTask

    per_task: dict[str, dict[str, Any]] = {}
    for key, value in parse_assignments(options, "--eval-opt").items():
        task, dot, name = key.partition(".")
        if not dot:
            raise InvalidSpec(f"--eval-opt needs TASK.KEY=VALUE, got {key!r}", field="--eval-opt")
        per_task.setdefault(task, {})[name] = value
    tasks = []
    for item in items:
        task, _, path = item.partition(":")
        data = DataSource.parse(path) if path else None
        if data is None and task != "latency":
            raise InvalidSpec(f"--eval {task} needs data: --eval {task}:PATH", field="--eval")
        tasks.append(EvalTask(task=task, data=data, options=per_task.get(task, {})))
    return tuple(tasks)


class _Bar:
    """A tqdm bar on stderr that follows pipeline events."""

    def __init__(self) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=100, unit="%", bar_format="{l_bar}{bar}| {n:.0f}% [{elapsed}<{remaining}]")

    def __call__(self, event: Any) -> None:
        block = f" block {event.block}/{event.total_blocks}" if event.total_blocks else ""
        self.bar.set_description(f"{event.stage}{block}")
        self.bar.update(max(0.0, event.percent - self.bar.n))

    def close(self) -> None:
        self.bar.close()


@click.command("compress")
@click.option("--model", required=True, help="Hub id (resolved through the HF cache) or a local directory.")
@click.option("--revision", default=None, help="Hub revision (branch, tag or commit sha).")
@click.option("--method", type=MethodChoice(), required=True, help="A method of the catalogue.")
@click.option(
    "--mac-target", type=MAC_TARGETS, default=None,
    help="Fraction of block MACs to keep, or a sweep: 0.9,0.7,0.5.",
)
@target_options
@click.option("--calibration", required=True, help="PATH, PATH:column or hf:ORG/NAME[:CONFIG][@SPLIT][#COL].")
@click.option("--num-samples", type=POSITIVE, default=128, show_default=True)
@click.option("--seq-len", type=POSITIVE, default=128, show_default=True, help="Calibration max_seq_length.")
@click.option("--reference-seq-len", type=POSITIVE, default=None, help="L of the MAC formulas [--seq-len].")
@click.option("--param", "params", multiple=True, help="Method parameter KEY=VALUE (repeatable).")
@click.option("--eval", "evals", multiple=True, help="TASK:PATH (repeatable); latency needs no PATH.")
@click.option("--eval-opt", "eval_opts", multiple=True, help="TASK.KEY=VALUE (perplexity.max_tokens=4096).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Artifact directory.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object as the last line.")
@domain_errors
def compress_command(
    model: str, revision: str | None, method: str, mac_target: tuple[float, ...] | None,
    max_drop: float | None, max_ratio: float | None, metric: str | None, calibration: str, num_samples: int,
    seq_len: int, reference_seq_len: int | None, params: tuple[str, ...], evals: tuple[str, ...],
    eval_opts: tuple[str, ...], device: str, seed: int, out: Path, as_json: bool,
) -> None:
    """Compress a model to a MAC target, evaluate it beside the dense model, save the artifact."""
    from workers.data import DataSource
    from workers.pipeline import PipelineConfig, run_pipeline

    method_params = parse_assignments(params, "--param")
    catalogue.get(method).validate_params(method_params, field_prefix="--param")  # before loading anything
    target = targets.parse(target_object(mac_target, max_drop, max_ratio, metric, ratio_flag="--mac-target"))
    config = PipelineConfig(
        model=model, revision=revision, method=method, targets=target,
        mac_target=target.ratios[0] if target.ratios else targets.SEARCH_CEILING,
        method_params=method_params,
        calibration=DataSource.parse(calibration), out_dir=out, num_samples=num_samples,
        max_seq_length=seq_len, reference_seq_len=reference_seq_len, seed=seed,
        evaluation=parse_eval(evals, eval_opts), device=device,
    )
    bar = _Bar()
    try:
        result = run_pipeline(config, on_event=bar)
    finally:
        bar.close()
    summary = result.summary()
    if as_json:
        click.echo(json.dumps(summary))
        return
    _echo_targets(summary)
    click.echo(f"artifact      {summary['artifact']}")
    click.echo(f"MAC ratio     {summary['mac_ratio']:.4f} (blocks), {summary['mac_ratio_model']:.4f} (model)")
    click.echo(f"parameters    {summary['params_before']:,} -> {summary['params_after']:,}")
    click.echo(f"compression   {summary['seconds']:.1f} s")
    for name, value in summary["metrics"]["baseline"].items():
        after = summary["metrics"]["compressed"].get(name)
        change = f" -> {after:.4f}" if after is not None else ""
        click.echo(f"{name:<13} {value:.4f}{change}")
    if "speedup" in summary["metrics"]["compressed"]:
        click.echo(f"speedup       {summary['metrics']['compressed']['speedup']:.2f}x")


def _echo_targets(summary: dict[str, Any]) -> None:
    """A sweep's curve or a search's walk, before the (first or chosen) model's figures."""
    for point in summary.get("points", []):
        figures = "  ".join(f"{k} {v:.4f}" for k, v in point["metrics"].items() if isinstance(v, float))
        where = point["artifact"]
        click.echo(f"target {point['target']:<6g} MAC {point['mac_ratio']:.4f}  {figures}  -> {where}")
    search = summary.get("search")
    if search:
        for step in search["steps"]:
            value = "unreachable" if step.get("value") is None else f"{step['value']:.4f}"
            verdict = "met" if step["met"] else "missed"
            click.echo(f"step   {step['mac_ratio']:<6g} {search['metric']} {value}  {verdict}")
        if not search["reachable"]:
            click.echo(f"no ratio up to {search['ceiling']} meets the bound; nothing saved")


COMMANDS: list[click.Command] = [compress_command]

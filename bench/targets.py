"""Sweeps and quality searches (issue 11), measured through `run_pipeline`, as a job runs them.

    python -m bench.targets [--only sweep,search-minilm,search-smollm2] [--threads N]

- `sweep`: all-MiniLM-L6-v2, `id`, calibration 256 STS-B train sentences, STS-B dev. In one run:
  five independent single-target jobs (0.9 ... 0.5), then one five-target sweep. Records each job's
  wall time (load to verified artifact), the sweep's, their ratio against the mean single job,
  and each target's Spearman beside its independent run's.
- `search-minilm`: `{"max_drop": 0.01, "metric": "spearman"}` on the same setting: the walked
  curve (search rows), the chosen model's Spearman on the report rows beside dense's there.
- `search-smollm2`: `{"max_ratio": 1.25, "metric": "perplexity"}` on SmolLM2-135M (64 WikiText-2
  valid chunks of 256 tokens; WikiText-2 test, 16,384 tokens, 512-token windows).

Writes bench/results/targets_<name>.json; `python -m bench.report` renders them.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import RESULTS, write_result
from bench.settings import MODELS, ModelBench
from core import targets as targeting
from workers.data import DataSource, default_data_dir
from workers.pipeline import EvalTask, PipelineConfig, PipelineResult, run_pipeline

log = logging.getLogger(__name__)
SWEEP = (0.9, 0.8, 0.7, 0.6, 0.5)


def _config(
    bench: ModelBench,
    out: Path,
    target: dict[str, Any],
    method: str = "id",
    params: dict[str, Any] | None = None,
) -> PipelineConfig:
    data = default_data_dir()
    calib_file, _, column = bench.calibration.partition(":")
    parsed = targeting.parse(target)
    return PipelineConfig(
        model=bench.model_id,
        method=method,
        method_params=dict(params or {}),
        mac_target=parsed.ratios[0] if parsed.ratios else 0.95,
        targets=parsed,
        calibration=DataSource(path=str(data / calib_file), text_column=column or None),
        out_dir=out,
        num_samples=bench.num_samples,
        max_seq_length=bench.max_seq_length,
        calibration_mode=bench.calib_mode,
        device="cpu",
        evaluation=(
            EvalTask(bench.task, DataSource(path=str(data / bench.eval_file)), dict(bench.eval_options)),
        ),
    )


def _timed(config: PipelineConfig) -> tuple[PipelineResult, float]:
    started = time.perf_counter()
    result = run_pipeline(config)
    return result, time.perf_counter() - started


def _mode(bench: ModelBench, tmp: Path, params: dict[str, Any]) -> dict[str, Any]:
    """Five single-target jobs, then one five-target sweep, with method parameters `params`."""
    singles = []
    for ratio in SWEEP:
        config = _config(bench, tmp / f"single-{ratio}-{params}", {"mac_ratio": ratio}, params=params)
        result, seconds = _timed(config)
        singles.append(
            {
                "target": ratio,
                "wall_seconds": seconds,
                "mac_ratio": result.mac_ratio,
                "metrics": result.metrics["compressed"],
                "timings": result.timings,
            }
        )
        log.info("%s single %.2f: %.1f s %s", params, ratio, seconds, result.metrics["compressed"])
    swept, seconds = _timed(
        _config(bench, tmp / f"sweep-{params}", {"mac_ratios": list(SWEEP)}, params=params)
    )
    log.info("%s sweep: %.1f s", params, seconds)
    return {
        "params": params,
        "singles": singles,
        "sweep": {"wall_seconds": seconds, "points": swept.points, "timings": swept.timings},
        "dense": swept.metrics["baseline"],
    }


def _compare(sweep: dict[str, Any], singles: list[dict[str, Any]], metric: str) -> dict[str, float]:
    mean = sum(s["wall_seconds"] for s in singles) / len(singles)
    deltas = [
        abs(p["metrics"][metric] - s["metrics"][metric])
        for p, s in zip(sweep["points"], singles, strict=True)
    ]
    return {
        "mean_single_seconds": mean,
        "sweep_over_single": sweep["wall_seconds"] / mean,
        "sweep_over_five_singles": sweep["wall_seconds"] / sum(s["wall_seconds"] for s in singles),
        "max_metric_difference": max(deltas),
    }


def sweep(results_dir: Path) -> Path:
    """Both modes in one run: staged (the default: exact) and unstaged (dense statistics shared)."""
    bench = MODELS["minilm"]
    with tempfile.TemporaryDirectory() as tmp:
        # untimed warm-up: imports, the model's first load and the data files' first read are paid
        # here, not by whichever job happens to run first
        run_pipeline(_config(bench, Path(tmp) / "warm-up", {"mac_ratio": 0.95}))
        staged = _mode(bench, Path(tmp), {})
        unstaged = _mode(bench, Path(tmp), {"staged": False})
    metric = bench.metric
    payload = {
        "suite": "targets",
        "kind": "sweep",
        "model": bench.model_id,
        "method": "id",
        "targets": list(SWEEP),
        "metric": metric,
        "dense": staged["dense"],
        "modes": {"staged": staged, "unstaged": unstaged},
        # each sweep against single-target jobs of its own mode, and the unstaged sweep against the
        # default (staged) jobs: what sharing the dense statistics costs in time and in the metric
        "comparisons": {
            "staged sweep vs staged jobs": _compare(staged["sweep"], staged["singles"], metric),
            "unstaged sweep vs unstaged jobs": _compare(unstaged["sweep"], unstaged["singles"], metric),
            "unstaged sweep vs default (staged) jobs": _compare(unstaged["sweep"], staged["singles"], metric),
        },
        "settings": {
            "num_samples": bench.num_samples,
            "max_seq_length": bench.max_seq_length,
            "calibration": bench.calibration,
            "eval": bench.eval_file,
            "device": "cpu",
        },
    }
    for name, figures in payload["comparisons"].items():
        log.info("%s: %s", name, figures)
    return write_result(
        "targets_sweep_minilm",
        payload,
        seeds={"calibration": 0},
        data_files=[default_data_dir() / bench.eval_file],
        results_dir=results_dir,
    )


def search(key: str, target: dict[str, Any], results_dir: Path) -> Path:
    bench = MODELS[key]
    with tempfile.TemporaryDirectory() as tmp:
        run_pipeline(_config(bench, Path(tmp) / "warm-up", {"mac_ratio": 1.0}))  # untimed warm-up
        result, seconds = _timed(_config(bench, Path(tmp) / "search", target))
    search = result.search or {}
    met = [s["mac_ratio"] for s in search.get("steps", []) if s["met"]]
    payload = {
        "suite": "targets",
        "kind": "search",
        "model": bench.model_id,
        "method": "id",
        "target": target,
        "metric": bench.metric,
        "wall_seconds": seconds,
        "search": search,
        "chosen": {
            "mac_ratio": result.mac_ratio,
            "mac_ratio_model": result.mac_ratio_model,
            "params_after": result.params_after,
            "params_before": result.params_before,
            "metrics_report_rows": result.metrics.get("compressed", {}),
            "dense_report_rows": result.metrics.get("baseline", {}),
        },
        "smallest_met_on_walk": min(met) if met else None,
        "timings": result.timings,
        "settings": {
            "num_samples": bench.num_samples,
            "max_seq_length": bench.max_seq_length,
            "calibration": bench.calibration,
            "eval": bench.eval_file,
            "eval_options": bench.eval_options,
            "search_fraction": 0.3,
            "device": "cpu",
        },
    }
    log.info(
        "search %s: %s in %.0f s",
        key,
        {k: search.get(k) for k in ("chosen_mac_ratio", "report_value", "dense_report_value")},
        seconds,
    )
    return write_result(
        f"targets_search_{key}",
        payload,
        seeds={"calibration": 0, "split": 0},
        data_files=[default_data_dir() / bench.eval_file],
        results_dir=results_dir,
    )


RUNS = {
    "sweep": sweep,
    "search-minilm": lambda out: search("minilm", {"max_drop": 0.01, "metric": "spearman"}, out),
    "search-smollm2": lambda out: search("smollm2", {"max_ratio": 1.25, "metric": "perplexity"}, out),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.targets", description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(RUNS), help=f"comma-separated: {', '.join(RUNS)}")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    for name in args.only.split(","):
        print(RUNS[name](args.results_dir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

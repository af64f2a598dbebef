"""Rerun the benchmark suites, then regenerate RESULTS.md and the plots from the result JSONs.

    python -m bench.run [--quick] [--only quality,speed,latency,scale,picogpt]
                        [--models minilm,sst2,smollm2] [--device cpu|cuda] [--results-dir DIR]
                        [--threads N] [--max-params N]

Full results go to bench/results/ (RESULTS.md and plots/ beside it in bench/); --quick results go to
bench/results/quick/ (or --results-dir) with their own RESULTS.md and plots/ there, so a quick run never
overwrites the full one. Progress is logged to stderr; the paths written are printed on stdout.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import time
from pathlib import Path

from bench.common import RESULTS
from bench.settings import MODELS, SUITES, Settings

log = logging.getLogger("bench.run")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the CI subset: MiniLM, 2 targets, tiny sizes")
    parser.add_argument(
        "--only", default=",".join(SUITES), help="comma-separated suites: " + ", ".join(SUITES)
    )
    parser.add_argument("--models", default=None, help="comma-separated models: " + ", ".join(MODELS))
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--results-dir", type=Path, default=None)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (default: torch's; --quick: 1)"
    )
    parser.add_argument("--max-params", type=float, default=None, help="largest scale-suite model, e.g. 1e8")
    parser.add_argument("--job-timeout", type=float, default=None, help="seconds per scale job")
    parser.add_argument("--scale-sizes", default=None, help="comma-separated sizes of the scale suite")
    parser.add_argument("--scale-methods", default=None, help="method labels of the scale suite")
    parser.add_argument("--targets", default=None, help="comma-separated MAC targets [settings]")
    parser.add_argument("--ablation-models", default=None, help="comma-separated, or 'none'")
    parser.add_argument("--factor-targets", default=None, help="MAC targets of the factorizations suite")
    parser.add_argument("--targets-check", action="store_true",
                        help="factorizations: MACs and artifact reload only (no metric, no latency)")
    parser.add_argument("--samples", type=int, default=None, help="calibration samples (default: per model)")
    parser.add_argument("--factor-methods", default=None, help="method labels for the factorizations suite")
    parser.add_argument("--speed-methods", default=None, help="method labels for the speed suite")
    return parser.parse_args(argv)


def _split(value: str, allowed: tuple[str, ...] | list[str], what: str) -> tuple[str, ...]:
    names = tuple(v.strip() for v in value.split(",") if v.strip())
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise SystemExit(f"unknown {what}: {', '.join(unknown)} (choose from {', '.join(allowed)})")
    return names


def build_settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, object] = {"device": args.device, "max_params": args.max_params}
    if args.threads:
        overrides["threads"] = args.threads
    if args.job_timeout:
        overrides["scale_job_timeout"] = args.job_timeout
    if args.scale_sizes:
        key = "scale_gpu_sizes" if args.device == "cuda" else "scale_sizes"
        overrides[key] = tuple(args.scale_sizes.split(","))
    if args.scale_methods:
        overrides["scale_methods"] = tuple(args.scale_methods.split(","))
    if args.models:
        overrides["models"] = _split(args.models, list(MODELS), "models")
        overrides["factor_models"] = overrides["models"]
    if args.targets:
        overrides["targets"] = tuple(float(t) for t in args.targets.split(","))
        overrides["latency_targets"] = tuple(t for t in overrides["targets"] if t < 1.0)  # type: ignore[union-attr]
    if args.factor_methods:
        overrides["factor_methods"] = tuple(args.factor_methods.split(","))
    if args.factor_targets:
        overrides["factor_targets"] = tuple(float(t) for t in args.factor_targets.split(","))
    if args.targets_check:
        overrides["factor_measure"] = False
    if args.samples:
        overrides["num_samples"] = args.samples
    if args.speed_methods:
        overrides["speed_methods"] = tuple(args.speed_methods.split(","))
    if args.ablation_models:
        names = args.ablation_models
        overrides["ablation_models"] = () if names == "none" else tuple(names.split(","))
    return Settings.quick_run(**overrides) if args.quick else Settings.full(**overrides)


def results_dir_for(args: argparse.Namespace) -> Path:
    if args.results_dir is not None:
        return args.results_dir.resolve()
    return RESULTS / "quick" if args.quick else RESULTS


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for key, value in (
        ("HF_HUB_OFFLINE", "1"),
        ("HF_DATASETS_OFFLINE", "1"),
        ("TOKENIZERS_PARALLELISM", "false"),
    ):
        os.environ.setdefault(key, value)
    suites = _split(args.only, SUITES, "suites")
    settings = build_settings(args)
    results = results_dir_for(args)
    import torch

    if settings.threads:
        torch.set_num_threads(settings.threads)
    timings: dict[str, float] = {}
    for suite in suites:
        start = time.perf_counter()
        log.info("suite %s -> %s", suite, results)
        for path in importlib.import_module(f"bench.{suite}").run(settings, results):
            print(path)
        timings[suite] = time.perf_counter() - start
    from bench import report

    for path in report.generate(results):
        print(path)
    log.info("done: %s", ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

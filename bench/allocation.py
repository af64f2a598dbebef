"""What the allocation trades (issue 12): `global` widths against `uniform` ones, and which runtimes
load each artifact, on all-MiniLM-L6-v2 (STS-B dev Spearman).

    python -m bench.allocation [--targets 0.7,0.5]

Each variant of `id` is one sweep job through `run_pipeline` (256 STS-B train sentences, the
targets), as a user's job runs: its metric per target and the artifact's `runtimes`
(compression.json). Variants: the default (`global` for encoders), `uniform` (every block the
same widths) and `uniform` with every head kept: BERT's head width follows from hidden/heads, so
only FFN widths can change in a config stock transformers reads. Writes bench/results/allocation.json.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path
from typing import Any

from bench.common import RESULTS, write_result
from bench.settings import MODELS
from bench.targets import _config, _timed
from workers.data import default_data_dir

log = logging.getLogger(__name__)
VARIANTS: dict[str, dict[str, Any]] = {
    "global (default)": {},
    "uniform": {"allocation": "uniform"},
    "uniform, all heads kept": {"allocation": "uniform", "prune_heads": False},
}


def run(targets: tuple[float, ...], results_dir: Path) -> Path:
    bench = MODELS["minilm"]
    rows = []
    dense: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="pare-allocation-") as tmp:
        for name, params in VARIANTS.items():
            config = _config(bench, Path(tmp) / name.replace(" ", "_"), {"mac_ratios": list(targets)},
                             params=params)
            result, seconds = _timed(config)
            dense = result.metrics["baseline"]
            for point in result.points:
                rows.append({"variant": name, "params": params, **{k: point[k] for k in (
                    "target", "mac_ratio", "metrics", "runtimes", "params_after")}})
            log.info("%s: %.0f s %s", name, seconds, [(p["target"], p["metrics"]) for p in result.points])
    return write_result(
        "allocation",
        {"suite": "allocation", "model": bench.model_id, "method": "id", "metric": bench.metric,
         "dense": dense, "targets": list(targets), "rows": rows,
         "settings": {"num_samples": bench.num_samples, "calibration": bench.calibration,
                      "eval": bench.eval_file, "device": "cpu"}},
        seeds={"calibration": 0},
        data_files=[default_data_dir() / bench.eval_file],
        results_dir=results_dir,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.allocation", description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default="0.7,0.5")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    print(run(tuple(float(t) for t in args.targets.split(",")), args.results_dir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

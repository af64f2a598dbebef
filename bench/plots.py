"""The PNG figures of RESULTS.md, drawn from result JSONs only (matplotlib, Agg backend, no display)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from bench.settings import METHOD_LABELS, MODELS  # noqa: E402

MARKERS = {"id": "o", "svd-aa": "s", "svd": "^", "magnitude": "D"}


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def quality(result: dict[str, Any], path: Path) -> Path:
    """Metric against achieved kept block MACs, a line per method, the dense figure as a horizontal line."""
    key = result["model"]["key"]
    metric = result["model"]["metric"]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    methods = dict.fromkeys(p["method"] for p in result["points"])
    for method in methods:
        points = sorted(
            (p["mac_ratio"], p["metrics"][metric])
            for p in result["points"]
            if p["method"] == method and "metrics" in p
        )
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, marker=MARKERS.get(method, "."), label=METHOD_LABELS.get(method, method))
    ax.axhline(result["dense"]["metrics"][metric], color="black", linestyle="--", linewidth=1, label="dense")
    ax.set_xlabel("kept block MACs (achieved)")
    ax.set_ylabel(metric)
    if metric == "perplexity":
        ax.set_yscale("log")
    ax.invert_xaxis()
    ax.set_title(f"{MODELS[key].label if key in MODELS else key}: {metric} vs MAC budget")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def ablation_samples(result: dict[str, Any], path: Path) -> Path | None:
    """ID's metric against the number of calibration samples, a line per target."""
    metric = result["model"]["metric"]
    rows = [
        a for a in result.get("ablations", []) if a["ablation"] in ("samples", "reference") and "metrics" in a
    ]
    targets = sorted({a["target"] for a in rows}, reverse=True)
    if len({a["samples"] for a in rows}) < 2:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for target in targets:
        points = sorted((a["samples"], a["metrics"][metric]) for a in rows if a["target"] == target)
        xs, ys = zip(*points, strict=True)
        ax.plot(xs, ys, marker="o", label=f"MAC {target}")
    ax.axhline(result["dense"]["metrics"][metric], color="black", linestyle="--", linewidth=1, label="dense")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("calibration samples")
    ax.set_ylabel(metric)
    ax.set_title(f"ID on {result['model']['label']}: calibration size")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def scale(result: dict[str, Any], fits: dict[str, tuple[float, float]], path: Path) -> Path:
    """Log-log compression time against parameters, with the fitted power law per method."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for method in dict.fromkeys(j["method"] for j in result["jobs"]):
        points = sorted(
            (j["params_before"], j["seconds"])
            for j in result["jobs"]
            if j["method"] == method and "seconds" in j
        )
        if not points:
            continue
        xs, ys = zip(*points, strict=True)
        line = ax.plot(
            xs, ys, marker=MARKERS.get(method, "."), linestyle="none", label=METHOD_LABELS.get(method, method)
        )
        if method in fits:
            a, c = fits[method]
            grid = [min(xs) * (max(xs) / min(xs)) ** (i / 20) for i in range(21)]
            ax.plot(
                grid,
                [math.exp(c) * g**a for g in grid],
                color=line[0].get_color(),
                linewidth=1,
                label=f"fit: ∝ params^{a:.2f}",
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("compression seconds")
    ax.set_title("Compression time at MAC 0.5, random Llama-shaped models")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return _save(fig, path)


def latency(result: dict[str, Any], path: Path) -> Path | None:
    """Measured speed-up against the theoretical 1/mac_ratio_model, a marker per method and batch size."""
    rows = [r for r in result["rows"] if "speedup" in r]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for method in dict.fromkeys(r["method"] for r in rows):
        for batch in sorted({r["batch_size"] for r in rows}):
            sel = [r for r in rows if r["method"] == method and r["batch_size"] == batch]
            ax.scatter(
                [r["theoretical_speedup_model"] for r in sel],
                [r["speedup"] for r in sel],
                marker=MARKERS.get(method, "."),
                label=f"{METHOD_LABELS.get(method, method)}, batch {batch}",
            )
    top = max(max(r["theoretical_speedup_model"], r["speedup"]) for r in rows) * 1.05
    ax.plot([1, top], [1, top], color="black", linestyle="--", linewidth=1, label="speed-up = 1/MAC ratio")
    ax.set_xlabel("theoretical speed-up (1 / whole-model MAC ratio)")
    ax.set_ylabel("measured speed-up")
    ax.set_title(f"{result['model']['label']}: measured vs theoretical ({result['settings']['device']})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)

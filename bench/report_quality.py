"""RESULTS.md: quality against MAC budget per model, every point, and the ablations of ID."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import plots
from bench.markdown import fmt, label, secs, table

Results = dict[str, list[dict[str, Any]]]


def _metric_grid(result: dict[str, Any], metric: str) -> list[str]:
    points = [p for p in result["points"]]
    methods = list(dict.fromkeys(p["method"] for p in points))
    targets = sorted({p["target"] for p in points}, reverse=True)
    rows = []
    for target in targets:
        row: list[Any] = [target]
        for method in methods:
            p = next((q for q in points if q["method"] == method and q["target"] == target), None)
            if p is None or "metrics" not in p:
                row.append("error" if p else "-")
            else:
                row.append(f"{fmt(p['metrics'].get(metric), metric)} ({p['mac_ratio']:.3f})")
        rows.append(row)
    return table([f"target → {metric} (achieved MAC)"] + [label(m) for m in methods], rows)


def quality_section(results: Results, plot_dir: Path, rel: str) -> list[str]:
    if not results.get("quality"):
        return []
    lines = ["## Quality against MAC budget", ""]
    for result in results.get("quality", []):
        model, dense, calib = result["model"], result["dense"]["metrics"], result["calibration"]
        metrics = [model["metric"], *model.get("extra_metrics", [])]
        lines += [f"### {model['label']} (`{model['model_id']}`)", ""]
        lines += [
            f"Dense: {', '.join(f'{m} {fmt(dense.get(m), m)}' for m in metrics)}. Task `{model['task']}` on "
            f"`{model['eval_file']}` {_subset(result)}; calibration {calib['num_samples']} × "
            f"≤{calib['max_seq_length']} "
            f"tokens ({calib['num_tokens']} tokens, mode {calib['mode']}) from `{calib['source']}`, seed "
            f"{calib['seed']}, fingerprint `{calib['fingerprint'][:12]}`; reference L = "
            f"{result['settings']['reference_seq_len']}.",
            "",
        ]
        for metric in metrics:
            lines += _metric_grid(result, metric)
        path = plots.quality(result, plot_dir / f"quality_{model['key']}.png")
        lines += [f"![{model['label']}]({rel}/{path.name})", ""]
        lines += _points_table(result["points"])
        lines += ablation_table(result, plot_dir, rel)
    return lines


def _subset(result: dict[str, Any]) -> str:
    subset = result.get("protocol", {}).get("subset")
    return f"({subset})" if subset else "(all of it)"


def _points_table(points: list[dict[str, Any]]) -> list[str]:
    rows = []
    for p in points:
        t = p.get("timings", {})
        rows.append(
            [
                label(p["method"]),
                p["target"],
                fmt(p.get("mac_ratio")),
                fmt(p.get("mac_ratio_model")),
                p.get("params_after", "-"),
                secs(p.get("seconds")),
                secs(t.get("capture")),
                secs(t.get("planning")),
                secs(t.get("compression")),
                secs(p.get("eval_seconds")),
                p.get("error", ""),
            ]
        )
    headers = [
        "method",
        "target",
        "MAC blocks",
        "MAC model",
        "params after",
        "compress s",
        "capture s",
        "planning s",
        "compression s",
        "eval s",
        "error",
    ]
    return ["<details><summary>every point</summary>", ""] + table(headers, rows) + ["</details>", ""]


def ablation_table(result: dict[str, Any], plot_dir: Path, rel: str) -> list[str]:
    ablations = result.get("ablations", [])
    if not ablations:
        return []
    metric = result["model"]["metric"]
    rows = [
        [
            a["ablation"],
            a["variant"],
            a["target"],
            a["samples"],
            fmt(a.get("mac_ratio")),
            fmt(a.get("metrics", {}).get(metric), metric),
            secs(a.get("seconds")),
            a.get("error", ""),
        ]
        for a in ablations
    ]
    lines = [f"Ablations of ID on {result['model']['label']} (one change at a time from the reference):", ""]
    lines += table(["varies", "variant", "target", "samples", "MAC", metric, "compress s", "error"], rows)
    path = plots.ablation_samples(result, plot_dir / f"ablation_samples_{result['model']['key']}.png")
    return lines + ([f"![calibration size]({rel}/{path.name})", ""] if path else [])

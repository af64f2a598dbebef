"""RESULTS.md section of sweeps and quality searches (issue 11), from bench/results/targets_*.json:
the sweep's wall time against single-target jobs and each target's metric beside its independent
run, and each search's walked curve (a plot) with the chosen model's figures on the report rows.
Torch-free; every sentence is computed from the result JSONs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.bars import Results
from bench.markdown import fmt, table


def _split(sweep: dict[str, Any]) -> str:
    """Where a sweep's wall time went: shared steps, the five compressions, the rest per target."""
    timings = sweep["timings"]
    shared = timings.get("load", 0) + timings.get("calibration_data", 0) + timings.get("evaluate_baseline", 0)
    prepare, compress = timings.get("prepare_shared", 0), timings.get("compress_total", 0)
    rest = sweep["wall_seconds"] - shared - prepare - compress
    return (
        f"{sweep['wall_seconds']:.1f} s: {shared:.1f} s shared (load, calibration sample, dense evaluation), "
        f"{prepare:.1f} s shared preparation (capture, planning pass), {compress:.1f} s for the five "
        f"compression passes, {rest:.1f} s evaluating, saving and verifying the five models"
    )


def _bound(mode: str, run: dict[str, Any]) -> str | None:
    """Why the ratio cannot fall under 2x by evaluating faster: ratio(E) = (N_sweep + 6E) / (N_one +
    2E) for an evaluation time E (a sweep evaluates dense once and each of five targets; a job
    evaluates twice), which moves monotonically from N_sweep/N_one (free evaluation) to 3."""
    singles = run["singles"]
    if not all("evaluate" in s.get("timings", {}) for s in singles):
        return None
    evals = [s["timings"].get("evaluate_baseline", 0) + s["timings"]["evaluate"] for s in singles]
    e = sum(evals) / len(evals) / 2
    n_one = sum(s["wall_seconds"] for s in singles) / len(singles) - 2 * e
    n_sweep = run["sweep"]["wall_seconds"] - 6 * e
    if n_one <= 0:
        return None
    low = min(n_sweep / n_one, 3.0)
    verdict = "so no evaluation speed brings it under 2x" if low >= 2 else "so a faster evaluation could"
    return (
        f"{mode}: one STS-B dev evaluation takes {e:.1f} s; without evaluation a job takes {n_one:.1f} s "
        f"and the sweep {n_sweep:.1f} s ({n_sweep / n_one:.2f}x), and as evaluation dominates the ratio "
        f"tends to 3x (six evaluations against two): between {low:.2f}x and 3x, {verdict}"
    )


def _sweep_lines(record: dict[str, Any]) -> list[str]:
    metric, modes, comparisons = record["metric"], record["modes"], record["comparisons"]
    lines = [
        f"**Sweep** ({record['model']}, `{record['method']}`, {record['settings']['num_samples']} "
        f"calibration sentences, {record['settings']['eval']}, targets "
        f"{', '.join(f'{t:g}' for t in record['targets'])}), "
        "each mode's five single-target jobs and its sweep in one run. Staged (the default) sweep: "
        f"{_split(modes['staged']['sweep'])}. Unstaged sweep: {_split(modes['unstaged']['sweep'])}.",
        "",
    ]
    bounds = [b for b in (_bound(mode, modes[mode]) for mode in ("staged", "unstaged") if mode in modes) if b]
    if bounds:
        lines += [
            "The 2x bar against the cost model sweep/one = (N_sweep + 6E) / (N_one + 2E), E one "
            "evaluation (the single jobs' measured mean): " + "; ".join(bounds) + ".",
            "",
        ]
    rows = []
    for name, c in comparisons.items():
        rows.append(
            [
                name,
                f"{c['mean_single_seconds']:.1f}",
                f"{c['sweep_over_single']:.2f}x",
                f"{c['sweep_over_five_singles']:.2f}x",
                f"{c['max_metric_difference']:.5f}",
                "PASS" if c["sweep_over_single"] < 2 else "FAIL",
                "PASS" if c["max_metric_difference"] <= 0.002 else "FAIL",
            ]
        )
    lines += table(
        [
            "comparison",
            "single job s",
            "sweep / one job",
            "sweep / five jobs",
            f"max |Δ {metric}|",
            "< 2x one job",
            "|Δ| ≤ 0.002",
        ],
        rows,
    )
    per_target = []
    singles = {m: {s["target"]: s for s in modes[m]["singles"]} for m in modes}
    points = {m: {p["target"]: p for p in modes[m]["sweep"]["points"]} for m in modes}
    for target in record["targets"]:
        row = [f"{target:g}"]
        for m in ("staged", "unstaged"):
            row += [
                fmt(points[m][target]["metrics"][metric], metric),
                fmt(singles[m][target]["metrics"][metric], metric),
            ]
        per_target.append(row)
    lines += [
        "",
        *table(
            ["target", f"{metric} staged sweep", "staged job", "unstaged sweep", "unstaged job"], per_target
        ),
        "",
    ]
    return lines


def _search_lines(record: dict[str, Any], plot: str | None) -> list[str]:
    search = record["search"]
    metric = record["metric"]
    bound = {k: v for k, v in record["target"].items() if k != "metric"}
    ((key, value),) = bound.items()
    chosen = search.get("chosen_mac_ratio")
    rows = [
        [
            fmt(s["mac_ratio"]),
            fmt(s.get("achieved")),
            fmt(s.get("value"), metric),
            "met" if s["met"] else "missed",
        ]
        for s in search["steps"]
    ]
    lines = [
        f"**Search** ({record['model']}, `{key}: {value}` on {metric}): {len(search['steps'])} steps in "
        f"{record['wall_seconds']:.0f} s, walked on the search rows "
        f"({record['settings']['search_fraction']:.0%} of {record['settings']['eval']}; dense there "
        f"{fmt(search['dense_search_value'], metric)}).",
    ]
    if chosen is None:
        lines.append(f"No ratio up to {search['ceiling']} met the bound: the job ends with that result.")
    else:
        smallest = record["smallest_met_on_walk"]
        lines.append(
            f"Chosen MAC ratio {fmt(chosen)} (achieved {fmt(record['chosen']['mac_ratio'])}; the smallest "
            f"walked ratio that met the bound: {fmt(smallest)}, so {chosen - smallest:.3f} above it, "
            f"bar ≤ 0.05). On the "
            f"report rows the search never saw: {metric} {fmt(search.get('report_value'), metric)} against "
            f"dense {fmt(search.get('dense_report_value'), metric)} "
            f"({'within' if search.get('met_on_report') else 'NOT within'} the bound)."
        )
    lines += ["", *table(["ratio tried", "achieved", f"{metric} (search rows)", ""], rows), ""]
    if plot:
        lines += [f"![{record['model']} search]({plot})", ""]
    return lines


def walk_plot(record: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    search, metric = record["search"], record["metric"]
    steps = [s for s in search["steps"] if s.get("value") is not None]
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for s in sorted(steps, key=lambda s: s["mac_ratio"]):
        ax.scatter(s["mac_ratio"], s["value"], color="tab:green" if s["met"] else "tab:red", zorder=3)
    xs = [s["mac_ratio"] for s in sorted(steps, key=lambda s: s["mac_ratio"])]
    ys = [s["value"] for s in sorted(steps, key=lambda s: s["mac_ratio"])]
    ax.plot(xs, ys, color="grey", linewidth=1)
    for order, s in enumerate(search["steps"], start=1):
        if s.get("value") is not None:
            ax.annotate(
                str(order),
                (s["mac_ratio"], s["value"]),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=8,
            )
    dense = search["dense_search_value"]
    bound = record["target"]
    limit = (
        dense * bound["max_ratio"]
        if "max_ratio" in bound
        else dense + bound["max_drop"]
        if metric in ("perplexity",)
        else dense - bound["max_drop"]
    )
    ax.axhline(dense, color="black", linestyle="--", linewidth=1, label="dense (search rows)")
    ax.axhline(limit, color="tab:orange", linestyle=":", linewidth=1.5, label="bound")
    if search.get("chosen_mac_ratio") is not None:
        ax.axvline(search["chosen_mac_ratio"], color="tab:blue", linewidth=1, label="chosen")
    ax.set_xlabel("MAC ratio tried (kept block MACs)")
    ax.set_ylabel(f"{metric} on the search rows")
    if metric == "perplexity":
        ax.set_yscale("log")
    ax.invert_xaxis()
    what = (f"{metric} within {bound['max_ratio']}x dense" if "max_ratio" in bound
            else f"{metric} within {bound['max_drop']} of dense")
    ax.set_title(f"{record['model'].split('/')[-1]}: {what}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def targets_section(results: Results, plot_dir: Path, rel: str) -> list[str]:
    records = results.get("targets", [])
    if not records:
        return []
    lines = [
        "## Sweeps and quality targets (issue 11)",
        "",
        "`python -m bench.targets`: one job per target against one sweep job (what they share: loading, "
        "the calibration sample, the dense evaluation, the captured block inputs and the dense planning "
        "pass), "
        "and searches for the smallest model within a quality bound (walked on 30% of the evaluation rows, "
        "reported on the other 70%). Wall times are whole `run_pipeline` calls on this machine.",
        "",
    ]
    for record in sorted(records, key=lambda r: (r["kind"] != "sweep", r["_file"])):
        if record["kind"] == "sweep":
            lines += _sweep_lines(record)
        else:
            name = Path(record["_file"]).stem + ".png"
            walk_plot(record, plot_dir / name)
            lines += _search_lines(record, f"{rel}/{name}")
    return lines


def allocation_section(results: dict[str, list[dict[str, Any]]]) -> list[str]:
    """RESULTS.md lines: the metric and the runtimes per variant and target, and the trade."""
    lines: list[str] = []
    for record in results.get("allocation", []):
        metric, rows = record["metric"], record["rows"]
        lines += [
            "## Allocation: global against uniform widths (issue 12)",
            "",
            f"`python -m bench.allocation`: `{record['method']}` on {record['model']}, "
            f"{record['settings']['num_samples']} calibration sentences, {record['settings']['eval']} "
            f"(dense {metric} {record['dense'][metric]:.4f}); each variant one sweep job. `runtimes` is "
            "what the artifact's compression.json says loads it.",
            "",
        ]
        lines += table(
            ["variant", "target", "MAC", metric, "runtimes"],
            [[r["variant"], f"{r['target']:g}", f"{r['mac_ratio']:.4f}", f"{r['metrics'][metric]:.4f}",
              ", ".join(r["runtimes"])] for r in rows],
        )
        by = {(r["variant"], r["target"]): r["metrics"][metric] for r in rows}
        stock = [r for r in rows if "transformers" in r["runtimes"]]
        for target in record["targets"]:
            best = by.get(("global (default)", target))
            loadable = [by[(r["variant"], target)] for r in stock if r["target"] == target]
            if best is not None and loadable:
                lines.append(
                    f"- MAC {target:g}: the default (global) {metric} {best:.4f}; the best artifact that "
                    f"stock transformers loads {max(loadable):.4f} ({max(loadable) - best:+.4f})."
                )
        lines.append("")
    return lines

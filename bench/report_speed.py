"""RESULTS.md: compression speed, inference speed and scale (with the fitted time exponent)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bench import plots
from bench.markdown import fmt, label, secs, table

Results = dict[str, list[dict[str, Any]]]


def speed_section(results: Results) -> list[str]:
    rows = []
    for result in results.get("speed", []):
        for j in result["jobs"]:
            calib = (j.get("calibration_seconds") or 0) + (j.get("capture_seconds") or 0)
            rows.append(
                [
                    result["model"]["label"],
                    label(j["method"]),
                    j["target"],
                    j.get("num_samples"),
                    secs(j.get("load_seconds")),
                    secs(calib),
                    secs(j.get("decomposition_seconds")),
                    secs(j.get("compress_seconds")),
                    secs(j.get("eval_seconds")),
                    fmt(j.get("peak_rss_mb_compress")),
                    fmt(j.get("peak_rss_mb_total")),
                    j.get("torch_threads", "-"),
                    j.get("error", ""),
                ]
            )
    if not rows:
        return []
    headers = [
        "model",
        "method",
        "target",
        "samples",
        "load s",
        "calibration s",
        "decomposition s",
        "compress s",
        "evaluation s",
        "peak MiB (compression)",
        "peak MiB (end)",
        "threads",
        "error",
    ]
    return [
        "## Compression speed",
        "",
        "One fresh process per job. calibration = sampling/tokenizing + the engine's capture of block-0 "
        "inputs; decomposition = planning pass + budget allocation + compression pass; compress = the "
        "engine's wall time (capture + decomposition), what the time bars measure. Peak = ru_maxrss of the "
        "job's process, which includes the interpreter, torch and the loaded model.",
        "",
    ] + table(headers, rows)


def latency_section(results: Results, plot_dir: Path, rel: str) -> list[str]:
    lines: list[str] = []
    for result in results.get("latency", []):
        rows = []
        for r in result["rows"]:
            if "speedup" not in r:
                rows.append(
                    [label(r["method"]), r["target"], "-", "-", "-", "-", "-", "-", "-", "-", r.get("error")]
                )
                continue
            d, c = r["dense"], r["compressed"]
            rows.append(
                [
                    label(r["method"]),
                    r["target"],
                    fmt(r["mac_ratio_model"]),
                    r["batch_size"],
                    f"{d['latency_ms']:.1f}",
                    f"{c['latency_ms']:.1f}",
                    f"{d['throughput']:.1f}",
                    f"{c['throughput']:.1f}",
                    f"{r['speedup']:.2f}x",
                    f"{r['theoretical_speedup_model']:.2f}x",
                    f"{r['efficiency']:.0%}",
                ]
            )
        s = result["settings"]
        lines += [f"### {result['model']['label']} ({s['device']}, seq_len {s['seq_len']})", ""]
        lines += table(
            [
                "method",
                "target",
                "MAC model",
                "batch",
                "dense ms",
                "compressed ms",
                "dense seq/s",
                "compressed seq/s",
                "speed-up",
                "1/MAC",
                "of theory",
            ],
            rows,
        )
        path = plots.latency(result, plot_dir / f"latency_{result['model']['key']}.png")
        lines += [f"![latency]({rel}/{path.name})", ""] if path else []
    if not lines:
        return []
    return [
        "## Inference speed",
        "",
        "Artifacts saved and reloaded with `load_compressed`, timed against the "
        "dense model by `compare_latency` (same inputs, interleaved runs, median).",
        "",
    ] + lines


def fit_power_law(xs: list[float], ys: list[float]) -> tuple[float, float] | None:
    """(a, c) of log y = a·log x + c by least squares; None with fewer than two distinct sizes."""
    if len(set(xs)) < 2:
        return None
    a, c = np.polyfit(np.log(xs), np.log(ys), 1)
    return float(a), float(c)


def scale_section(results: Results, plot_dir: Path, rel: str) -> list[str]:
    lines: list[str] = []
    for result in results.get("scale", []):
        jobs = [j for j in result["jobs"] if "seconds" in j]
        fits = {}
        for method in dict.fromkeys(j["method"] for j in jobs):
            sel = [j for j in jobs if j["method"] == method]
            fit = fit_power_law([j["params_before"] for j in sel], [j["seconds"] for j in sel])
            if fit:
                fits[method] = fit
        rows = [
            [
                j["size"],
                j.get("params_before", "-"),
                label(j["method"]),
                secs(j.get("seconds")),
                secs(j.get("capture_seconds")),
                secs(j.get("decomposition_seconds")),
                fmt(j.get("peak_rss_mb_built")),
                fmt(j.get("peak_rss_mb_compress")),
                fmt(j.get("cuda_peak_mb")),
                j.get("error", ""),
            ]
            for j in result["jobs"]
        ]
        s = result["settings"]
        cuda = str(s["device"]).startswith("cuda")
        gpus = sorted({j["gpu"] for j in result["jobs"] if j.get("gpu")})
        torch_version = result["jobs"][0].get("torch", "?")
        where = f"{s['device']} ({', '.join(gpus)}, torch {torch_version})" if gpus else s["device"]
        lines += [
            "## Scale" + (" on a GPU" if cuda else ""),
            "",
            f"Random Llama-shaped models, `id` and activation-aware `svd` at MAC {s['target']}, "
            f"calibration {s['calibration_samples']} × {s['calibration_tokens']} random token ids, device "
            f"{where}.",
            "",
        ]
        lines += table(
            [
                "size",
                "params",
                "method",
                "compress s",
                "capture s",
                "decomposition s",
                "peak MiB (model built)",
                "peak MiB (compression)",
                "CUDA peak MiB",
                "error",
            ],
            rows,
        )
        lines += ["Fitted exponent (least squares of log time on log params):", ""]
        lines += [f"- **{label(m)}: time ∝ params^{a:.2f}**" for m, (a, _) in fits.items()] + [""]
        timed = [j for j in jobs if j.get("latency_ms_dense")]
        if timed:
            lines += [f"Prefill latency, {result['protocol']['latency']}:", ""]
            lines += table(
                ["size", "method", "MAC ratio", "fp32 dense ms", "fp32 compressed ms", "fp32 speed-up",
                 "bf16 dense ms", "bf16 compressed ms", "bf16 speed-up"],
                [
                    [j["size"], label(j["method"]), f"{j['mac_ratio']:.4f}"]
                    + [
                        cell
                        for dt in ("fp32", "bf16")
                        for cell in (
                            f"{j['latency_ms_dense'][dt]:.2f}",
                            f"{j['latency_ms_compressed'][dt]:.2f}",
                            f"{j['latency_ms_dense'][dt] / j['latency_ms_compressed'][dt]:.2f}x",
                        )
                    ]
                    for j in timed
                ],
            )
        if jobs:
            path = plots.scale(result, fits, plot_dir / ("scale_cuda.png" if cuda else "scale.png"))
            lines += [f"![scale]({rel}/{path.name})", ""]
    return lines

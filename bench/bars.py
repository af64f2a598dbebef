"""The bars RESULTS.md checks, each against the measured numbers in the result JSONs (torch-free).

A bar whose numbers are missing is "not measured", never a pass. Figures from a --quick run (a subset
of the data, fewer calibration samples) are shown but marked: they are not the bar's protocol.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Results = dict[str, list[dict[str, Any]]]  # suite -> result JSONs
GB = 1e9 / 2**20  # MiB in one GB (10^9 bytes)


@dataclass(frozen=True)
class Bar:
    name: str
    requirement: str
    measured: str
    status: str  # PASS | FAIL | not measured

    @property
    def passed(self) -> bool:
        return self.status.startswith("PASS")


def _result(results: Results, suite: str, model: str) -> dict[str, Any] | None:
    for result in results.get(suite, []):
        if result.get("model", {}).get("key") == model:
            return result
    return None


def _point(result: dict[str, Any] | None, method: str, target: float) -> dict[str, Any] | None:
    for point in (result or {}).get("points", []):
        if point["method"] == method and abs(point["target"] - target) < 1e-9 and "metrics" in point:
            return point
    return None


def _status(ok: bool, result: dict[str, Any] | None) -> str:
    verdict = "PASS" if ok else "FAIL"
    return f"{verdict} (quick run)" if result and result.get("quick") else verdict


def _missing(name: str, requirement: str) -> Bar:
    return Bar(name, requirement, "-", "not measured")


def minilm_quality(results: Results, target: float, floor: float) -> Bar:
    name, req = f"MiniLM ID @ MAC {target}", f"STS-B dev Spearman ≥ {floor} (dense 0.867)"
    result = _result(results, "quality", "minilm")
    point = _point(result, "id", target)
    if point is None:
        return _missing(name, req)
    value, dense = point["metrics"]["spearman"], result["dense"]["metrics"]["spearman"]  # type: ignore[index]
    measured = f"{value:.4f} (dense {dense:.4f}, achieved MAC {point['mac_ratio']:.3f})"
    return Bar(name, req, measured, _status(value >= floor, result))


def minilm_ranking(results: Results, target: float = 0.7) -> Bar:
    name, req = f"MiniLM @ MAC {target}: ID first", "ID above activation-aware SVD and magnitude"
    result = _result(results, "quality", "minilm")
    points = {m: _point(result, m, target) for m in ("id", "svd-aa", "magnitude")}
    if any(p is None for p in points.values()):
        return _missing(name, req)
    values = {m: p["metrics"]["spearman"] for m, p in points.items()}  # type: ignore[index]
    measured = ", ".join(f"{m} {v:.4f}" for m, v in values.items())
    ok = values["id"] > values["svd-aa"] and values["id"] > values["magnitude"]
    return Bar(name, req, measured, _status(ok, result))


def smollm2_perplexity(results: Results, target: float = 0.7, ceiling: float = 40.0) -> Bar:
    name, req = f"SmolLM2-135M ID @ MAC {target}", f"WikiText-2 perplexity ≤ {ceiling:g} (dense 24.9)"
    result = _result(results, "quality", "smollm2")
    point = _point(result, "id", target)
    if point is None:
        return _missing(name, req)
    value, dense = point["metrics"]["perplexity"], result["dense"]["metrics"]["perplexity"]  # type: ignore[index]
    measured = f"{value:.2f} (dense {dense:.2f}, achieved MAC {point['mac_ratio']:.3f})"
    return Bar(name, req, measured, _status(value <= ceiling, result))


def minilm_latency(results: Results, target: float = 0.5, floor: float = 1.6) -> Bar:
    name, req = f"MiniLM ID @ MAC {target}: CPU speed-up", f"≥ {floor}x measured at batch 8 (batch 1 shown)"
    result = _result(results, "latency", "minilm")
    rows = [
        r
        for r in (result or {}).get("rows", [])
        if r.get("method") == "id" and abs(r.get("target", -1) - target) < 1e-9 and "speedup" in r
    ]
    by_batch = {r["batch_size"]: r for r in rows}
    if 8 not in by_batch or result["settings"]["device"] != "cpu":  # type: ignore[index]
        return _missing(name, req)
    measured = ", ".join(
        f"batch {b}: {r['speedup']:.2f}x (theory {r['theoretical_speedup_model']:.2f}x)"
        for b, r in sorted(by_batch.items())
    )
    return Bar(name, req, measured, _status(by_batch[8]["speedup"] >= floor, result))


def _speed_job(
    results: Results, model: str, method: str = "id"
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    result = _result(results, "speed", model)
    for job in (result or {}).get("jobs", []):
        if job.get("method") == method and job.get("compress_seconds") is not None:
            return result, job
    return result, None


def compression_time(results: Results, model: str, label: str, target: float, limit: float) -> Bar:
    name, req = (
        f"{label} ID @ MAC {target}: compression time",
        f"≤ {limit:g} s (load and evaluation excluded)",
    )
    result, job = _speed_job(results, model)
    if job is None or abs(job["target"] - target) > 1e-9:
        return _missing(name, req)
    threads, samples = job.get("torch_threads"), job.get("num_samples")
    measured = f"{job['compress_seconds']:.1f} s (torch threads {threads}, {samples} samples)"
    return Bar(name, req, measured, _status(job["compress_seconds"] <= limit, result))


def smollm2_memory(results: Results, limit_gb: float = 4.0) -> Bar:
    name, req = (
        "SmolLM2-135M ID @ MAC 0.7: peak memory",
        f"< {limit_gb:g} GB (process peak RSS through compression)",
    )
    result, job = _speed_job(results, "smollm2")
    if job is None or job.get("peak_rss_mb_compress") is None:
        return _missing(name, req)
    gb = job["peak_rss_mb_compress"] / GB
    return Bar(name, req, f"{gb:.2f} GB", _status(gb < limit_gb, result))


def api_load(results: Results) -> Bar:
    """Issue 4's bar, from `python -m bench.api_load` with the service's default settings."""
    name, req = "API: 200 concurrent GET /v1/jobs/{id}", "no errors, p99 < 100 ms (each topology)"
    for result in results.get("api_load", []):
        modes = result.get("modes") or {}
        if not modes or any(m["server"].get("job_cache_seconds") is not None for m in modes.values()):
            continue  # an older layout, or a variant run (e.g. the job cache off)
        measured = "; ".join(
            f"{mode}: burst p99 {m['burst']['all']['p99_ms']:g} ms, 200 pollers p99 "
            f"{m['wrk_paced'].get('p99_ms', '-')} ms, errors {m['burst']['all']['errors']}"
            for mode, m in modes.items()
        )
        return Bar(name, req, measured, "PASS" if result.get("pass") else "FAIL")
    return _missing(name, req)


BARS: list[Callable[[Results], Bar]] = [
    lambda r: minilm_quality(r, 0.7, 0.858),
    minilm_ranking,
    lambda r: minilm_quality(r, 0.5, 0.830),
    smollm2_perplexity,
    minilm_latency,
    lambda r: compression_time(r, "minilm", "MiniLM", 0.5, 15.0),
    lambda r: compression_time(r, "smollm2", "SmolLM2-135M", 0.7, 150.0),
    smollm2_memory,
    api_load,
]


def check_bars(results: Results) -> list[Bar]:
    return [bar(results) for bar in BARS]

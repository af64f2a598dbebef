"""The sweeps-and-searches section of RESULTS.md from synthetic result JSONs: the comparisons with
their verdicts, the per-target table, a search's walk with its plot, and an unreachable search."""

from __future__ import annotations

import json
from pathlib import Path

from bench import report

PNG = b"\x89PNG\r\n\x1a\n"
TARGETS = [0.9, 0.5]


def _mode(seconds: float, sweep_seconds: float, shift: float, evaluate: float = 4.0) -> dict:  # type: ignore[type-arg]
    singles = [
        {"target": t, "wall_seconds": seconds, "mac_ratio": t, "metrics": {"spearman": 0.8 + t / 10},
         "timings": {"evaluate_baseline": evaluate, "evaluate": evaluate}}
        for t in TARGETS
    ]
    points = [
        {"target": t, "label": f"mac-{t}", "mac_ratio": t, "metrics": {"spearman": 0.8 + t / 10 + shift}}
        for t in TARGETS
    ]
    timings = {
        "load": 1.0,
        "calibration_data": 0.5,
        "evaluate_baseline": 4.0,
        "prepare_shared": 2.0,
        "compress_total": 3.0,
    }
    return {
        "singles": singles,
        "sweep": {"wall_seconds": sweep_seconds, "points": points, "timings": timings},
    }


def _write(folder: Path, name: str, record: dict) -> None:  # type: ignore[type-arg]
    (folder / f"{name}.json").write_text(json.dumps({"suite": "targets", **record}))


def test_sweep_and_search_sections(tmp_path: Path) -> None:
    staged, unstaged = _mode(10.0, 30.0, 0.0), _mode(8.0, 14.0, 0.001, evaluate=2.0)
    comparisons = {
        "staged sweep vs staged jobs": {
            "mean_single_seconds": 10.0,
            "sweep_over_single": 3.0,
            "sweep_over_five_singles": 1.5,
            "max_metric_difference": 0.0,
        },
        "unstaged sweep vs default (staged) jobs": {
            "mean_single_seconds": 10.0,
            "sweep_over_single": 1.4,
            "sweep_over_five_singles": 0.7,
            "max_metric_difference": 0.003,
        },
    }
    _write(
        tmp_path,
        "targets_sweep_minilm",
        {
            "kind": "sweep",
            "model": "m",
            "method": "id",
            "targets": TARGETS,
            "metric": "spearman",
            "modes": {"staged": staged, "unstaged": unstaged},
            "comparisons": comparisons,
            "settings": {"num_samples": 256, "eval": "stsb/dev.tsv"},
        },
    )
    steps = [
        {"mac_ratio": 0.95, "value": 0.86, "met": True, "achieved": 0.95},
        {"mac_ratio": 0.1, "met": False, "note": "infeasible"},
        {"mac_ratio": 0.525, "value": 0.85, "met": True, "achieved": 0.525},
    ]
    search = {
        "steps": steps,
        "chosen_mac_ratio": 0.525,
        "dense_search_value": 0.865,
        "ceiling": 0.95,
        "report_value": 0.858,
        "dense_report_value": 0.866,
        "met_on_report": True,
    }
    _write(
        tmp_path,
        "targets_search_minilm",
        {
            "kind": "search",
            "model": "org/m",
            "method": "id",
            "target": {"max_drop": 0.01, "metric": "spearman"},
            "metric": "spearman",
            "wall_seconds": 70.0,
            "search": search,
            "chosen": {"mac_ratio": 0.5249},
            "smallest_met_on_walk": 0.525,
            "settings": {"search_fraction": 0.3, "eval": "stsb/dev.tsv"},
        },
    )
    _write(
        tmp_path,
        "targets_search_smollm2",
        {
            "kind": "search",
            "model": "org/s",
            "method": "id",
            "target": {"max_ratio": 1.01, "metric": "perplexity"},
            "metric": "perplexity",
            "wall_seconds": 9.0,
            "chosen": {},
            "search": {
                "steps": [{"mac_ratio": 0.95, "value": 30.0, "met": False}],
                "chosen_mac_ratio": None,
                "dense_search_value": 25.0,
                "ceiling": 0.95,
            },
            "smallest_met_on_walk": None,
            "settings": {"search_fraction": 0.3, "eval": "wikitext-2/test.txt"},
        },
    )
    paths = report.generate(tmp_path)
    markdown = (tmp_path / "RESULTS.md").read_text()
    section = markdown.split("## Sweeps and quality targets", 1)[1].split("\n## ", 1)[0]
    assert "| staged sweep vs staged jobs | 10.0 | 3.00x | 1.50x | 0.00000 | FAIL | PASS |" in section
    assert (
        "| unstaged sweep vs default (staged) jobs | 10.0 | 1.40x | 0.70x | 0.00300 | PASS | FAIL |"
        in section
    )
    assert "30.0 s: 5.5 s shared" in section and "14.0 s: 5.5 s shared" in section
    # the cost model: staged E = 4, 2 s without evaluation against the sweep's 6 s; unstaged E = 2, 4 s vs 2 s
    assert "staged: one STS-B dev evaluation takes 4.0 s; without evaluation a job takes 2.0 s" in section
    assert "the sweep 6.0 s (3.00x)" in section and "between 3.00x and 3x, so no evaluation speed" in section
    assert "the sweep 2.0 s (0.50x)" in section and "so a faster evaluation could" in section
    assert "Chosen MAC ratio 0.5250" in section and "within the bound" in section
    assert "No ratio up to 0.95 met the bound" in section
    plots = {p.name: p for p in paths[1:]}
    for name in ("targets_search_minilm.png", "targets_search_smollm2.png"):
        assert plots[name].read_bytes()[:8] == PNG and f"plots/{name}" in section


def test_allocation_section(tmp_path: Path) -> None:
    rows = [
        {"variant": v, "target": t, "mac_ratio": t, "metrics": {"spearman": m}, "runtimes": r}
        for v, t, m, r in [
            ("global (default)", 0.7, 0.869, ["pare"]),
            ("uniform", 0.7, 0.858, ["pare"]),
            ("uniform, all heads kept", 0.7, 0.861, ["pare", "transformers", "sentence-transformers"]),
        ]
    ]
    (tmp_path / "allocation.json").write_text(json.dumps({
        "suite": "allocation", "model": "m", "method": "id", "metric": "spearman",
        "dense": {"spearman": 0.867}, "targets": [0.7], "rows": rows,
        "settings": {"num_samples": 256, "eval": "stsb/dev.tsv"},
    }))
    report.generate(tmp_path)
    section = (tmp_path / "RESULTS.md").read_text().split("## Allocation", 1)[1].split("\n## ", 1)[0]
    assert ("| uniform, all heads kept | 0.7 | 0.7000 | 0.8610 | pare, transformers, sentence-transformers |"
            in section)
    assert ("the default (global) spearman 0.8690; the best artifact that stock transformers loads 0.8610 "
            "(-0.0080)") in section

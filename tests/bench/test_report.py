"""The report generator on synthetic result JSONs: tables, the bars section, plots, nothing else read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import report
from bench.bars import check_bars
from bench.report_speed import fit_power_law
from tests.bench import synthetic

PNG = b"\x89PNG\r\n\x1a\n"


def _bars(markdown: str) -> dict[str, str]:
    """bar name -> status, read back from the generated Bars table."""
    section = markdown.split("## Bars", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1:-1] for line in section.splitlines() if line.startswith("| ") and "**" in line]
    return {cells[0].strip(): cells[-1].strip().strip("*") for cells in rows}


@pytest.fixture()
def passing(tmp_path: Path) -> Path:
    synthetic.everything(tmp_path, passing=True)
    return tmp_path


def test_writes_markdown_and_plots(passing: Path) -> None:
    paths = report.generate(passing)
    markdown = (passing / "RESULTS.md").read_text()
    assert paths[0] == passing / "RESULTS.md"
    names = {p.name for p in paths[1:]}
    assert {"quality_minilm.png", "quality_smollm2.png", "latency_minilm.png", "scale.png"} <= names
    assert "ablation_samples_minilm.png" in names
    for path in paths[1:]:
        assert path.read_bytes()[:8] == PNG
        assert f"plots/{path.name}" in markdown
    for heading in (
        "## Runs",
        "## Bars",
        "## Quality against MAC budget",
        "## Compression speed",
        "## Inference speed",
        "## Scale",
        "## PicoGPT",
        "## Protocols, seeds and data",
    ):
        assert heading in markdown
    assert "do not edit by hand" in markdown


def test_every_bar_passes_on_passing_numbers(passing: Path) -> None:
    _api_load(passing, "api_load", None, 80.0)
    report.generate(passing)
    statuses = _bars((passing / "RESULTS.md").read_text())
    assert len(statuses) == 9
    assert set(statuses.values()) == {"PASS"}, statuses


def test_bars_fail_and_show_the_figure(tmp_path: Path) -> None:
    synthetic.everything(tmp_path, passing=False)
    report.generate(tmp_path)
    markdown = (tmp_path / "RESULTS.md").read_text()
    statuses = _bars(markdown)
    assert statuses["MiniLM ID @ MAC 0.7"] == "FAIL"
    assert statuses["MiniLM ID @ MAC 0.5"] == "FAIL"
    assert statuses["SmolLM2-135M ID @ MAC 0.7"] == "FAIL"
    assert statuses["MiniLM ID @ MAC 0.5: CPU speed-up"] == "FAIL"
    assert statuses["MiniLM ID @ MAC 0.5: compression time"] == "FAIL"
    assert statuses["SmolLM2-135M ID @ MAC 0.7: peak memory"] == "FAIL"
    assert "0.8370 (dense 0.8670" in markdown  # the measured figure is in the table beside the verdict


def test_missing_results_are_not_measured(tmp_path: Path) -> None:
    synthetic.quality_minilm(tmp_path)
    bars = check_bars(report.load_results(tmp_path))
    by_name = {b.name: b for b in bars}
    assert by_name["MiniLM ID @ MAC 0.7"].passed
    assert by_name["SmolLM2-135M ID @ MAC 0.7"].status == "not measured"
    assert by_name["SmolLM2-135M ID @ MAC 0.7: peak memory"].status == "not measured"


def test_quick_results_are_marked(tmp_path: Path) -> None:
    synthetic.quality_minilm(tmp_path, quick=True)
    report.generate(tmp_path)
    markdown = (tmp_path / "RESULTS.md").read_text()
    assert "**Quick run**" in markdown
    assert _bars(markdown)["MiniLM ID @ MAC 0.7"] == "PASS (quick run)"


def test_quality_table_has_a_row_per_target_and_a_column_per_method(passing: Path) -> None:
    report.generate(passing)
    markdown = (passing / "RESULTS.md").read_text()
    grid = markdown.split("| target → spearman (achieved MAC) |", 1)[1].split("\n\n", 1)[0].splitlines()
    assert "ID (STAT) | SVD, activation-aware | SVD, plain | magnitude" in grid[0]
    rows = [line for line in grid[2:] if line.startswith("|")]
    assert [row.split("|")[1].strip() for row in rows] == ["1.0", "0.9", "0.8", "0.7", "0.6", "0.5", "0.4"]
    assert "0.8610 (0.699)" in rows[3]  # id at 0.7: value and achieved MAC ratio
    assert "error" in rows[-1]  # the failed point is shown, not dropped


def test_scale_exponent_is_fitted(passing: Path) -> None:
    report.generate(passing)
    markdown = (passing / "RESULTS.md").read_text()
    assert "ID (STAT): time ∝ params^1.25" in markdown
    assert fit_power_law([1.0, 10.0, 100.0], [3.0, 30.0, 300.0]) == pytest.approx((1.0, 1.0986), abs=1e-3)
    assert fit_power_law([5.0, 5.0], [1.0, 2.0]) is None


def test_picogpt_states_the_loss_to_trained_cores(passing: Path) -> None:
    report.generate(passing)
    markdown = (passing / "RESULTS.md").read_text()
    assert "51.6%" in markdown and "191,872" in markdown
    assert "10.6 points below the trained MPO cores" in markdown  # 41.0% against 51.6%
    assert "χ = 4: no method could be compressed to within 5%" in markdown
    assert (
        "χ = 8: no method could be compressed to within 5% of this parameter count (closest: 150,000"
        in markdown
    )


def test_output_depends_only_on_the_jsons(passing: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    report.generate(passing)
    first = (passing / "RESULTS.md").read_text()
    other = tmp_path_factory.mktemp("copy")
    for path in passing.glob("*.json"):
        (other / path.name).write_text(path.read_text())
    report.generate(other)
    assert (other / "RESULTS.md").read_text() == first


def test_stale_plots_are_removed(passing: Path) -> None:
    (passing / "plots").mkdir()
    (passing / "plots" / "quality_gone.png").write_bytes(PNG)
    report.generate(passing)
    assert not (passing / "plots" / "quality_gone.png").exists()


def test_default_output_beside_the_main_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    results = tmp_path / "bench" / "results"
    results.mkdir(parents=True)
    synthetic.quality_minilm(results)
    monkeypatch.setattr(report, "RESULTS", results)
    paths = report.generate(results)
    assert paths[0] == tmp_path / "bench" / "RESULTS.md"
    assert (tmp_path / "bench" / "plots" / "quality_minilm.png").is_file()


def test_result_files_carry_provenance(passing: Path) -> None:
    record = json.loads((passing / "quality_minilm.json").read_text())
    for key in ("command", "git_commit", "device", "versions", "seeds", "data", "protocol", "timestamp"):
        assert key in record


def _api_load(path: Path, name: str, cache: float | None, burst_p99: float) -> None:
    def mode(p99: float) -> dict:  # type: ignore[type-arg]
        return {
            "server": {"job_cache_seconds": cache},
            "burst": {"all": {"p99_ms": p99, "errors": 0}},
            "wrk_paced": {"p99_ms": 12.5},
        }

    modes = {"embedded": mode(burst_p99), "production": mode(burst_p99 / 2)}
    record = {"suite": "api_load", "pass": burst_p99 < 100, "modes": modes}
    (path / f"{name}.json").write_text(json.dumps(record))


def test_api_load_bar_reads_the_default_run_only(tmp_path: Path) -> None:
    _api_load(tmp_path, "api_load_nocache", 0.0, 250.0)  # a variant: never the bar's figure
    bar = {b.name: b for b in check_bars(report.load_results(tmp_path))}[
        "API: 200 concurrent GET /v1/jobs/{id}"
    ]
    assert bar.status == "not measured"
    _api_load(tmp_path, "api_load", None, 80.0)
    bar = {b.name: b for b in check_bars(report.load_results(tmp_path))}[
        "API: 200 concurrent GET /v1/jobs/{id}"
    ]
    assert (
        bar.passed
        and "embedded: burst p99 80 ms" in bar.measured
        and "production: burst p99 40 ms" in bar.measured
    )
    _api_load(tmp_path, "api_load", None, 180.0)
    bar = {b.name: b for b in check_bars(report.load_results(tmp_path))}[
        "API: 200 concurrent GET /v1/jobs/{id}"
    ]
    assert bar.status == "FAIL"

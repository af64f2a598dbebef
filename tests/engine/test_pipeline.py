"""`run_pipeline` in-process on a tiny local model: its steps, its result contract, its refusals.

The summary keys are a contract (`pare compress --json`, the job's results); the pipeline and
the engine see the model through one adapter; an infeasible target and a cancel both stop the
job before anything is written; and the API side of the service never imports torch.
"""

from __future__ import annotations

import dataclasses
import inspect
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from core.errors import BudgetInfeasible, Cancelled
from tests import factories
from workers.compression import adapters
from workers.data import DataSource
from workers.pipeline import EvalTask, Event, PipelineConfig, PipelineResult, run_pipeline

SUMMARY_KEYS = [
    "mac_ratio", "mac_ratio_model", "params_before", "params_after", "seconds", "timings", "artifact",
    "runtimes", "metrics", "protocols", "resolved",
]
STEPS = ["load", "calibration_data", "evaluate_baseline", "compress", "evaluate", "save", "verify"]


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return factories.save_tiny_llama(tmp_path_factory.mktemp("llama"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return factories.write_corpus(tmp_path_factory.mktemp("data") / "corpus.txt")


def config(model: Path, corpus: Path, out: Path, **overrides: Any) -> PipelineConfig:
    values: dict[str, Any] = dict(
        model=str(model), method="id", mac_target=0.6, calibration=DataSource(path=str(corpus)), out_dir=out,
        num_samples=8, max_seq_length=32, device="cpu",
        evaluation=(EvalTask("perplexity", DataSource(path=str(corpus)), {"seq_len": 32}),),
    )
    return PipelineConfig(**{**values, **overrides})


def test_the_result_keeps_its_contract_and_runs_every_step_once(
    llama: Path, corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[str] = []
    init = adapters.ModelAdapter.__init__

    def counting(self: adapters.ModelAdapter, model: Any) -> None:
        built.append(inspect.stack()[1].frame.f_globals["__name__"])
        init(self, model)

    monkeypatch.setattr(adapters.ModelAdapter, "__init__", counting)
    events: list[Event] = []
    result = run_pipeline(config(llama, corpus, tmp_path / "out"), on_event=events.append)

    assert isinstance(result, PipelineResult)
    assert list(result.summary()) == SUMMARY_KEYS
    assert [k for k in result.timings if not k.startswith("compress_")] == STEPS
    assert result.seconds == result.timings["compress"]
    assert result.artifact_dir == tmp_path / "out" and (result.artifact_dir / "compression.json").is_file()
    assert result.report["macs"]["mac_ratio"] == result.mac_ratio and 0.59 <= result.mac_ratio <= 0.6
    assert set(result.metrics) == {"baseline", "compressed"} and "perplexity" in result.metrics["compressed"]
    assert result.resolved["calibration_fingerprint"] == result.report["calibration"]["fingerprint"]
    # one adapter for the pipeline and the engine together (the artifact writer reads its own)
    ours = [m for m in built if m in ("workers.pipeline", "workers.compression.engine")]
    assert ours == ["workers.pipeline"]
    stages = [e.stage for e in events]
    assert list(dict.fromkeys(stages)) == ["loading", "calibrating", "evaluating", "compressing", "saving",
                                           "verifying"]  # a decoder's `id` allocates uniformly: no planning
    assert stages.index("saving") > max(i for i, s in enumerate(stages) if s == "evaluating")
    assert [e.percent for e in events] == sorted(e.percent for e in events)


def test_an_infeasible_target_fails_before_compression_and_writes_nothing(
    llama: Path, corpus: Path, tmp_path: Path
) -> None:
    stages: list[str] = []
    with pytest.raises(BudgetInfeasible) as caught:
        run_pipeline(config(llama, corpus, tmp_path / "out", mac_target=0.01, evaluation=()),
                     on_event=lambda e: stages.append(e.stage))
    assert caught.value.field == "target.mac_ratio"
    assert "compressing" not in stages and "saving" not in stages
    assert not (tmp_path / "out").exists()


def test_a_cancel_after_compression_stops_before_saving(llama: Path, corpus: Path, tmp_path: Path) -> None:
    compressed = []

    def on_event(event: Event) -> None:
        if event.stage == "compressing" and event.block == event.total_blocks:
            compressed.append(True)

    with pytest.raises(Cancelled, match="before saving"):
        run_pipeline(config(llama, corpus, tmp_path / "out", evaluation=()), on_event=on_event,
                     should_cancel=lambda: bool(compressed))
    assert compressed and not (tmp_path / "out").exists()


def test_the_job_results_summarize_a_pipeline_result(tmp_path: Path) -> None:
    from workers.tasks import summarize

    result = PipelineResult(
        artifact_dir=tmp_path, mac_ratio=0.5, mac_ratio_model=0.6, params_before=100, params_after=40,
        seconds=1.0, timings={"compress": 1.0},
        metrics={"baseline": {"latency_ms": 10.0, "perplexity": 5.0},
                 "compressed": {"latency_ms": 4.0, "perplexity": 6.0}},
        protocols={"latency": {}}, resolved={}, report={},
    )
    results = summarize(result)
    assert results["params_ratio"] == 0.4 and results["speedup"] == 2.5
    assert results["baseline"] == result.metrics["baseline"] and results["compressed"]["perplexity"] == 6.0
    assert {f.name for f in dataclasses.fields(PipelineResult)} >= {"artifact_dir", "report"}


@pytest.mark.parametrize("module", ["app.main", "workers.tasks", "workers.pipeline"])
def test_importing_the_service_side_never_imports_torch(module: str) -> None:
    code = f"import sys, {module}; assert 'torch' not in sys.modules"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr

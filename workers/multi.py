"""Jobs with several targets: a sweep over MAC ratios, and the search for a quality bound.

Both share with a single-target job (workers.pipeline) every step that does not depend on the
budget, once: loading, the calibration sample, the dense evaluation, and the engine's
`prepare` (block-0 inputs captured from the calibration batches; the dense planning pass, with
its error curves, pivots and spectra, when the method allocates from data). Per target they run
the compression pass on a copy of the dense model (staged: block l is calibrated on this
target's compressed blocks 0..l-1, as an independent run does, so each target's model is the
one a single-target job builds), then evaluate, time, save and verify it.

A sweep saves every target under `<out>/<label>/` (core.targets.label: mac-0.7). A search
evaluates each step on the `search` part of the metric's evaluation rows and reports the chosen
model's figures, and the dense model's, on the `report` part (core.evaluation.PartOptions), then
saves only that model, at `<out>/`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from core import targets as targeting
from core.errors import Cancelled
from workers import pipeline as pl

if TYPE_CHECKING:
    from torch import nn

    from workers.compression.adapters import ModelAdapter
    from workers.compression.engine import Prepared
    from workers.data import CalibrationSet


def run_multi(
    config: pl.PipelineConfig,
    *,
    on_event: Callable[[pl.Event], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> pl.PipelineResult:
    """Run a sweep (`config.targets.ratios`) or a search (`config.targets.quality`)."""
    assert config.targets is not None
    spec = pl.compression_spec(config)
    device = pl.resolve_device(config.device)
    timings: dict[str, float] = {}
    with pl._timed(timings, "load"):
        loaded = pl._load(config, spec)
        report = pl._Reporter(on_event, loaded.planning)
        report("loading", 1, 1, f"loaded {loaded.resolved.model_id}")
    with pl._timed(timings, "calibration_data"):
        calibration = pl._calibration_data(config, loaded, report)
    run = _Run(config, loaded, calibration, device, report, should_cancel, timings)
    if config.targets.quality is not None:
        return run.search(config.targets.quality)
    return run.sweep(list(config.targets.ratios))


class _Run:
    def __init__(
        self,
        config: pl.PipelineConfig,
        loaded: pl._Loaded,
        calibration: CalibrationSet,
        device: str,
        report: pl._Reporter,
        should_cancel: Callable[[], bool] | None,
        timings: dict[str, float],
    ) -> None:
        self.config, self.loaded, self.calibration = config, loaded, calibration
        self.device, self.report, self.should_cancel, self.timings = device, report, should_cancel, timings
        self.latency = any(t.task == "latency" for t in config.evaluation)

    # ----- shared steps ---------------------------------------------------------------------
    def _baseline(self, options: dict[str, dict[str, Any]] | None = None) -> pl._Scores:
        scores = pl._Scores()
        with pl._timed(self.timings, "evaluate_baseline"):
            pl._evaluate(
                self.config, self.loaded, self.device, "baseline", scores, self.report, options=options
            )
        return scores

    def _prepare(self, ratios: list[float]) -> Prepared:
        import torch

        from workers.compression.engine import prepare

        torch.manual_seed(self.config.seed)
        with pl._timed(self.timings, "prepare"):
            return prepare(
                self.loaded.adapter,
                self.calibration.batches,
                pl.compression_spec(self.config),
                targets=ratios,
                device=self.device,
                on_progress=self._progress,
                should_cancel=self.should_cancel,
            )

    def _progress(self, stage: str, done: int, total: int) -> None:
        self.report(stage, done, total, f"{stage} block {done}/{total}")

    def _compress(self, prepared: Prepared, ratio: float) -> tuple[ModelAdapter, dict[str, Any], float]:
        import torch

        from workers.compression.engine import compress_to

        torch.manual_seed(self.config.seed)
        started = time.perf_counter()
        adapter, engine_report = compress_to(
            prepared, ratio, copy=True, on_progress=self._progress, should_cancel=self.should_cancel
        )
        return adapter, engine_report, time.perf_counter() - started

    def _finish(
        self,
        model: nn.Module,
        engine_report: dict[str, Any],
        scores: pl._Scores,
        out_dir: Any,
        dense: nn.Module | None,
        options: dict[str, dict[str, Any]] | None,
        seconds: float,
    ) -> pl.PipelineResult:
        """Evaluate (and time against `dense`), save to out_dir, verify; the point's result."""
        timings = dict(self.timings)
        with pl._timed(timings, "evaluate"):
            pl._evaluate(
                self.config,
                self.loaded,
                self.device,
                "compressed",
                scores,
                self.report,
                model=model,
                options=options,
            )
            if dense is not None:
                pl._latency(self.config, dense, model, self.device, scores)
        self._check_cancel("before saving")
        with pl._timed(timings, "save"):
            artifact = pl._save(
                self.config,
                self.loaded,
                self.calibration,
                engine_report,
                scores,
                self.report,
                model=model,
                out_dir=out_dir,
            )
        with pl._timed(timings, "verify"):
            pl._verify(artifact, model, self.calibration, self.report)
        timings["compress"] = seconds
        return pl._result(
            self.loaded, self.calibration, engine_report, scores, artifact, self.device, timings
        )

    def _check_cancel(self, when: str) -> None:
        if self.should_cancel is not None and self.should_cancel():
            raise Cancelled(f"cancelled {when}")

    def _dense(self) -> nn.Module | None:
        return pl._dense_copy(self.config, self.loaded.model)

    # ----- a sweep ------------------------------------------------------------------------------
    def sweep(self, ratios: list[float]) -> pl.PipelineResult:
        baseline = self._baseline()
        dense = self._dense()
        prepared = self._prepare(ratios)
        results = []
        for k, ratio in enumerate(ratios):
            self.report.window = (k, len(ratios))
            adapter, engine_report, seconds = self._compress(prepared, ratio)
            scores = pl._Scores(
                {"baseline": dict(baseline.metrics["baseline"]), "compressed": {}}, dict(baseline.protocols)
            )
            out = self.config.out_dir / targeting.label(ratio)
            results.append(self._finish(adapter.model, engine_report, scores, out, dense, None, seconds))
            del adapter
        first = results[0]
        first.points = [_point(ratio, r) for ratio, r in zip(ratios, results, strict=True)]
        first.artifact_dir = self.config.out_dir
        first.timings = {
            **first.timings,
            "prepare_shared": self.timings.get("prepare", 0.0),
            "compress_total": sum(r.seconds for r in results),
        }
        return first

    # ----- a search -----------------------------------------------------------------------------
    def search(self, quality: targeting.QualityTarget) -> pl.PipelineResult:
        task = quality.task
        if not any(t.task == task for t in self.config.evaluation):
            from core.errors import InvalidSpec

            raise InvalidSpec(
                f"a {quality.metric} target needs a {task!r} evaluation task to measure it",
                field="target.metric",
            )
        report_part = {task: {"part": "report"}}
        search_part = {task: {"part": "search"}}
        baseline = self._baseline(report_part)  # the figures the chosen model is compared with
        dense_search = self._metric(self.loaded.model, search_part, quality)
        floor = max(targeting.SEARCH_FLOOR, self._least())
        prepared = self._prepare([targeting.SEARCH_CEILING])
        best: dict[str, Any] = {}
        tried = [0]

        def try_ratio(ratio: float) -> tuple[float, float]:
            self.report.window = (min(tried[0], 6), 8)  # a walk takes about 7 steps, then the final
            tried[0] += 1
            adapter, engine_report, seconds = self._compress(prepared, ratio)
            value = self._metric(adapter.model, search_part, quality)
            if quality.meets(dense_search, value) and ratio < best.get("ratio", 2.0):
                best.update(ratio=ratio, adapter=adapter, report=engine_report, seconds=seconds)
            return value, float(engine_report["macs"]["mac_ratio"])

        walk = targeting.search(try_ratio, lambda v: quality.meets(dense_search, v), floor=floor)
        summary: dict[str, Any] = {
            **quality.describe(),
            "task": task,
            "dense_search_value": dense_search,
            "floor": floor,
            "ceiling": targeting.SEARCH_CEILING,
            "resolution": targeting.SEARCH_RESOLUTION,
            "steps": [s.as_dict() for s in walk.steps],
            "reachable": walk.reachable,
            "chosen_mac_ratio": walk.chosen,
        }
        if not walk.reachable:
            return self._unreachable(baseline, summary, prepared)
        self.report.window = (7, 8)
        scores = pl._Scores(
            {"baseline": dict(baseline.metrics["baseline"]), "compressed": {}}, dict(baseline.protocols)
        )
        result = self._finish(
            best["adapter"].model,
            best["report"],
            scores,
            self.config.out_dir,
            self._dense(),
            report_part,
            best["seconds"],
        )
        final = result.metrics["compressed"].get(quality.metric)
        dense_report = result.metrics["baseline"].get(quality.metric)
        summary.update(
            report_value=final,
            dense_report_value=dense_report,
            met_on_report=None
            if final is None or dense_report is None
            else quality.meets(dense_report, final),
        )
        result.search = summary
        result.timings = {**result.timings, "search_steps": len(walk.steps)}
        return result

    def _metric(
        self, model: nn.Module, options: dict[str, dict[str, Any]], quality: targeting.QualityTarget
    ) -> float:
        from workers.evaluation import run_task

        task = next(t for t in self.config.evaluation if t.task == quality.task)
        result = run_task(
            task.task,
            model,
            self.loaded.tokenizer,
            data=task.data,
            options={**task.options, **options[task.task]},
            device=self.device,
        )
        return float(result.metrics[quality.metric])

    def _least(self) -> float:
        """The least ratio the method reaches from the shapes alone (0 when only planning knows)."""
        from workers.compression.engine import build_method, measure

        method = build_method(pl.compression_spec(self.config), self.loaded.adapter)
        least = method.least_block_macs()
        dense = measure(self.loaded.adapter, self.config.reference_seq_len or self.config.max_seq_length)
        return 0.0 if least is None else round(least / dense["block_macs"] + 0.005, 4)

    def _unreachable(
        self, baseline: pl._Scores, summary: dict[str, Any], prepared: Prepared
    ) -> pl.PipelineResult:
        """No ratio up to the ceiling meets the bound: a result that says so, and no artifact."""
        from workers.compression.artifacts import library_versions

        before = prepared.before
        return pl.PipelineResult(
            artifact_dir=None,
            mac_ratio=1.0,
            mac_ratio_model=1.0,
            params_before=before["params"],
            params_after=before["params"],
            seconds=0.0,
            timings=dict(self.timings),
            metrics={"baseline": baseline.metrics["baseline"], "compressed": {}},
            protocols=baseline.protocols,
            resolved={
                "model_id": self.loaded.resolved.model_id,
                "revision": self.loaded.resolved.revision,
                "calibration_fingerprint": self.calibration.fingerprint,
                "calibration_tokens": self.calibration.num_tokens,
                "device": self.device,
                "versions": library_versions(),
            },
            report={},
            search=summary,
        )


def _point(ratio: float, result: pl.PipelineResult) -> dict[str, Any]:
    """One target of a sweep as the job's results list it."""
    return {
        "target": ratio,
        "label": targeting.label(ratio),
        "mac_ratio": result.mac_ratio,
        "mac_ratio_model": result.mac_ratio_model,
        "params_after": result.params_after,
        "metrics": result.metrics["compressed"],
        "seconds": result.seconds,
        "runtimes": result.runtimes,
        "artifact": str(result.artifact_dir),
    }

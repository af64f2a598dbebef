"""Celery tasks and the embedded worker: take a job id, claim it, run the pipeline, write results.

`execute_job` is the whole life of one attempt:

1. claim the job with compare-and-set (queued → running, attempt+1, a lease, a new fence);
   a duplicate delivery finds nothing to claim and returns at once;
2. a heartbeat thread extends the lease; losing it (reaper re-queued, job fenced out) stops the run;
3. fetch uploaded datasets from storage, build a `PipelineConfig`, call `run_pipeline` with
   `on_event` (throttled progress + events) and `should_cancel` (status `cancelling` or lost lease);
4. upload the artifact files under a key that contains the fence, then in one transaction mark the
   job succeeded (fenced) and record artifacts and evaluation rows; a stale run's objects are deleted.
"""

from __future__ import annotations

import contextlib
import logging
import mimetypes
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from celery import shared_task
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from app.db.engine import session_scope
from app.db.jobstate import Claim, claim_job, finish_job, heartbeat, job_state, record_progress
from app.db.models import ACTIVE, Artifact, Dataset, EvaluationResult, Job
from app.queue import REAP, RUN_JOB, CeleryDispatcher, NullDispatcher
from app.schemas import JobRequest
from app.services import retention, scratch, webhooks
from app.services.reaper import reap_once
from app.settings import Settings, get_settings
from app.storage import Storage, StoredObject, copy_to, make_storage
from core.errors import Cancelled, PareError
from workers.data import DataSource
from workers.pipeline import EvalTask, Event, PipelineConfig, PipelineResult, run_pipeline

log = logging.getLogger(__name__)
T = TypeVar("T")


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


class Heartbeat:
    """Extends the lease every `interval` seconds; `lost` turns True when the run was fenced out."""

    def __init__(self, *, settings: Settings, claim: Claim) -> None:
        self.settings, self.claim = settings, claim
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{claim.job_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.settings.heartbeat_seconds):
            try:
                with session_scope(self.settings.database_url) as session:
                    alive = heartbeat(session, claim=self.claim, lease_seconds=self.settings.lease_seconds)
            except Exception:  # noqa: BLE001 - database blip: try again; the lease has slack
                log.warning("heartbeat for %s failed", self.claim.job_id, exc_info=True)
                continue
            if not alive:
                log.warning("job %s: lease lost (fence %d); stopping", self.claim.job_id, self.claim.fence)
                self.lost.set()
                return


class Reporter:
    """on_event: progress on the job row and a progress event, at most every event_interval_seconds."""

    def __init__(self, *, settings: Settings, claim: Claim, lost: threading.Event) -> None:
        self.settings, self.claim, self.lost = settings, claim, lost
        self._last = 0.0
        self._stage: str | None = None

    def __call__(self, event: Event) -> None:
        now = time.monotonic()
        changed = event.stage != self._stage or bool(event.data)
        if not changed and now - self._last < self.settings.event_interval_seconds:
            return
        self._last, self._stage = now, event.stage
        progress = {
            "stage": event.stage,
            "block": event.block,
            "total_blocks": event.total_blocks,
            "percent": round(float(event.percent), 2),
            "eta_seconds": event.eta_seconds,
        }
        payload = progress | {"message": event.message} | ({"data": event.data} if event.data else {})
        try:
            with session_scope(self.settings.database_url) as session:
                if not record_progress(session, claim=self.claim, progress=progress, event=payload):
                    self.lost.set()
        except Exception:  # noqa: BLE001 - progress is best effort; the run goes on
            log.warning("could not record progress for %s", self.claim.job_id, exc_info=True)


class CancelCheck:
    """should_cancel: the job is `cancelling`, or this run no longer holds it (read at most every poll)."""

    def __init__(self, *, settings: Settings, claim: Claim, lost: threading.Event) -> None:
        self.settings, self.claim, self.lost = settings, claim, lost
        self._checked, self._answer = 0.0, False

    def __call__(self) -> bool:
        if self.lost.is_set() or self._answer:
            return True
        now = time.monotonic()
        if now - self._checked < self.settings.cancel_poll_seconds:
            return False
        self._checked = now
        try:
            with session_scope(self.settings.database_url) as session:
                state = job_state(session, job_id=self.claim.job_id)
        except Exception:  # noqa: BLE001 - keep running; the heartbeat decides about the lease
            return False
        self._answer = (
            state is None
            or state[0] not in ACTIVE
            or state[0] == "cancelling"
            or state[1] != self.claim.fence
        )
        return self._answer


def fetch_data(*, settings: Settings, storage: Storage, job: Job, dest: Path) -> dict[str, tuple[Path, str]]:
    """Copy the job's uploaded datasets to local files: {dataset id: (path, sha256)}."""
    request = JobRequest.model_validate(job.request)
    refs = {request.calibration.dataset} | {t.dataset for t in request.evaluation if t.dataset}
    with session_scope(settings.database_url) as session:
        rows = session.scalars(
            select(Dataset).where(Dataset.id.in_(refs), Dataset.tenant_id == job.tenant_id)
        ).all()
    found = {}
    for row in rows:
        path = copy_to(
            storage,
            key=row.storage_key,
            sha256=row.sha256,
            dest=dest / f"{row.id}.{row.format}",  # the format detected at upload, whatever the name
        )
        found[row.id] = (path, row.sha256)
    return found


def _source(
    ref: str, *, data: dict[str, tuple[Path, str]], split: str | None, text_column: str | None
) -> DataSource:
    if ref in data:
        return DataSource(path=str(data[ref][0]), text_column=text_column)
    return DataSource(hub_id=ref, split=split or "train", text_column=text_column)


def build_config(
    *,
    request: JobRequest,
    data: dict[str, tuple[Path, str]],
    out_dir: Path,
    device: str,
    model_root: Path | None = None,
) -> PipelineConfig:
    """The stored request as the pipeline's config."""
    cal = request.calibration
    evaluation = tuple(
        EvalTask(
            task=t.task,
            data=_source(t.dataset, data=data, split=t.split, text_column=t.text_column)
            if t.dataset
            else None,
            options=t.all_options(),
        )
        for t in request.evaluation
    )
    return PipelineConfig(
        model=request.model.id,
        revision=request.model.revision,
        method=request.method.name,
        method_params=dict(request.method.params),
        mac_target=request.target.first_ratio(),
        targets=request.target.parsed(),
        reference_seq_len=request.target.reference_seq_len,
        calibration=_source(cal.dataset, data=data, split=cal.split, text_column=cal.text_column),
        num_samples=cal.num_samples,
        max_seq_length=cal.max_seq_length,
        seed=cal.seed,
        evaluation=evaluation,
        out_dir=out_dir,
        device=device,
        allow_local=False,
        model_root=model_root,
    )


def summarize(result: PipelineResult) -> dict[str, Any]:
    """The job's `results`: metrics side by side, MAC and parameter ratios, speedup, timings."""
    baseline = dict(result.metrics.get("baseline", {}))
    compressed = dict(result.metrics.get("compressed", {}))
    speedup = None
    for name, before in baseline.items():
        after = compressed.get(name)
        if "latency" in name and after and before and speedup is None:
            speedup = float(before) / float(after)
    extra: dict[str, Any] = {}
    if result.points:  # a sweep: the curve, dense point first, each target's artifact folder
        dense = {"target": 1.0, "label": "dense", "mac_ratio": 1.0, "mac_ratio_model": 1.0,
                 "params_after": result.params_before, "metrics": baseline}
        extra["curve"] = [dense] + [
            {k: v for k, v in point.items() if k != "artifact"} | {"artifacts": f"{point['label']}/"}
            for point in result.points
        ]
    if result.search is not None:
        extra["search"] = result.search
    return {
        **extra,
        "baseline": baseline,
        "compressed": compressed,
        "mac_ratio": result.mac_ratio,
        "mac_ratio_model": result.mac_ratio_model,
        "params_before": result.params_before,
        "params_after": result.params_after,
        "params_ratio": result.params_after / result.params_before if result.params_before else None,
        "speedup": speedup,
        "seconds": result.seconds,
        "timings": result.timings,
        "protocols": result.protocols,
        "runtimes": result.runtimes,
    }


def _task_of(name: str, protocols: dict[str, Any]) -> str:
    for task in protocols:
        if name == task or name.startswith((f"{task}.", f"{task}_", f"{task}/")):
            return task
    return name.split(".", 1)[0]


def upload_artifacts(*, storage: Storage, claim: Claim, artifact_dir: Path) -> list[tuple[str, StoredObject]]:
    """Store every file of the artifact directory under jobs/<id>/<fence>/ (atomic per object)."""
    stored = []
    for path in sorted(p for p in artifact_dir.rglob("*") if p.is_file()):
        name = path.relative_to(artifact_dir).as_posix()
        stored.append((name, storage.put_file(f"jobs/{claim.job_id}/{claim.fence}/{name}", path)))
    return stored


def content_type(name: str) -> str:
    if name.endswith(".json"):
        return "application/json"
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def _commit_success(
    *,
    settings: Settings,
    claim: Claim,
    result: PipelineResult,
    resolved: dict[str, Any],
    stored: list[tuple[str, StoredObject]],
) -> str:
    """Mark succeeded with artifacts and evaluation rows in one fenced transaction; a cancel that
    arrived meanwhile wins (cancelled). Returns succeeded, cancelled or fenced."""
    done_progress = {"stage": "done", "percent": 100.0, "block": None, "total_blocks": None, "eta_seconds": 0}
    with session_scope(settings.database_url) as session:
        if not finish_job(
            session,
            claim=claim,
            status="succeeded",
            results=summarize(result),
            resolved=resolved,
            progress=done_progress,
            from_statuses=("running",),
        ):
            cancelled = finish_job(session, claim=claim, status="cancelled", from_statuses=("cancelling",))
            return "cancelled" if cancelled else "fenced"
        for name, obj in stored:
            session.add(
                Artifact(
                    job_id=claim.job_id,
                    name=name,
                    storage_key=obj.key,
                    size_bytes=obj.size_bytes,
                    sha256=obj.sha256,
                    content_type=content_type(name),
                )
            )
        compressed = [(p["target"], p["metrics"]) for p in result.points] or [
            (None, result.metrics.get("compressed", {}))
        ]
        for phase, target, metrics in [("baseline", None, result.metrics.get("baseline", {}))] + [
            ("compressed", target, metrics) for target, metrics in compressed
        ]:
            for name, value in metrics.items():
                task = _task_of(name, result.protocols)
                session.add(
                    EvaluationResult(
                        job_id=claim.job_id,
                        phase=phase,
                        mac_target=target,
                        task=task,
                        name=name,
                        value=float(value),
                        protocol=result.protocols.get(task, {}),
                    )
                )
    return "succeeded"


def record_success(
    *,
    settings: Settings,
    storage: Storage,
    claim: Claim,
    job: Job,
    result: PipelineResult,
    fingerprints: dict[str, str],
) -> str:
    """Upload under the run's fence, then commit; objects of a run that did not succeed are deleted."""
    stored = (
        upload_artifacts(storage=storage, claim=claim, artifact_dir=result.artifact_dir)
        if result.artifact_dir is not None
        else []  # a search that found no model within its bound: results, no files
    )
    resolved = (job.resolved or {}) | dict(result.resolved) | {"datasets": fingerprints}
    outcome = retrying(
        lambda: _commit_success(
            settings=settings, claim=claim, result=result, resolved=resolved, stored=stored
        )
    )
    if outcome != "succeeded":
        log.warning("job %s: %s after uploading; deleting this run's objects", claim.job_id, outcome)
        for _, obj in stored:
            storage.delete(obj.key)
    return outcome


def retrying(write: Callable[[], T], *, attempts: int = 6, delay: float = 1.0) -> T:
    """Retry a terminal write while the database is unreachable (1, 2, 4, ... seconds), so a short
    outage loses no transition; past that the lease expires and the reaper re-queues the job."""
    for attempt in range(1, attempts + 1):
        try:
            return write()
        except OperationalError:
            if attempt == attempts:
                raise
            log.warning("database unreachable; retrying the write in %.0fs", delay)
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


def _finish(settings: Settings, claim: Claim, status: str, error: tuple[str, str] | None = None) -> bool:
    def write() -> bool:
        with session_scope(settings.database_url) as session:
            return finish_job(session, claim=claim, status=status, error=error)

    return retrying(write)


def execute_job(*, job_id: str, settings: Settings, owner: str | None = None) -> str:
    """Run one attempt of a job; returns what happened (skipped, succeeded, failed, cancelled, fenced)."""
    with session_scope(settings.database_url) as session:
        claim = claim_job(
            session, job_id=job_id, owner=owner or worker_name(), lease_seconds=settings.lease_seconds
        )
        job = session.get(Job, job_id) if claim else None
    if claim is None or job is None:
        log.info("job %s: nothing to claim (duplicate delivery or no longer queued)", job_id)
        return "skipped"
    log.info("job %s: attempt %d (fence %d)", job_id, claim.attempt, claim.fence)
    retention.sweep_objects_of(settings, [job_id])  # objects an earlier, killed attempt stored
    work = Path(settings.work_dir) / job_id / str(claim.fence)
    storage = make_storage(settings)
    outcome = "fenced"
    try:
        with Heartbeat(settings=settings, claim=claim) as beat:
            outcome = _run(
                settings=settings, storage=storage, claim=claim, job=job, work=work, lost=beat.lost
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
        with contextlib.suppress(OSError):  # and what killed earlier attempts of this job left
            for older in work.parent.iterdir():
                if older.name.isdigit() and int(older.name) < claim.fence:
                    shutil.rmtree(older, ignore_errors=True)
            work.parent.rmdir()
    if outcome in ("succeeded", "failed", "cancelled"):
        webhooks.schedule(settings=settings, job_id=job_id)
    return outcome


def _run(
    *, settings: Settings, storage: Storage, claim: Claim, job: Job, work: Path, lost: threading.Event
) -> str:
    try:
        data = fetch_data(settings=settings, storage=storage, job=job, dest=work / "data")
        config = build_config(
            request=JobRequest.model_validate(job.request),
            data=data,
            out_dir=work / "out",
            device=settings.device,
            model_root=settings.model_root,
        )
        result = run_pipeline(
            config,
            on_event=Reporter(settings=settings, claim=claim, lost=lost),
            should_cancel=CancelCheck(settings=settings, claim=claim, lost=lost),
        )
    except Cancelled:
        if lost.is_set():
            return "fenced"
        return "cancelled" if _finish(settings, claim, "cancelled") else "fenced"
    except PareError as exc:
        return "failed" if _finish(settings, claim, "failed", (exc.code, str(exc))) else "fenced"
    except Exception as exc:  # noqa: BLE001 - a bug in one job must not look like a lost worker
        log.exception("job %s failed unexpectedly", claim.job_id)
        return (
            "failed"
            if _finish(settings, claim, "failed", ("internal_error", f"{type(exc).__name__}: {exc}"))
            else "fenced"
        )
    if lost.is_set():
        return "fenced"
    fingerprints = {ref: sha for ref, (_, sha) in data.items()}
    if CancelCheck(settings=settings, claim=claim, lost=lost)():
        return "cancelled" if _finish(settings, claim, "cancelled") else "fenced"
    return record_success(
        settings=settings, storage=storage, claim=claim, job=job, result=result, fingerprints=fingerprints
    )


@shared_task(name=RUN_JOB, ignore_result=True, acks_late=True)
def run_job(job_id: str) -> str:
    """Celery entry point: one job id per message; duplicates are harmless."""
    return execute_job(job_id=job_id, settings=get_settings())


@shared_task(name=REAP, ignore_result=True)
def reap() -> None:
    """Celery beat entry point for the reaper (the API process runs it too)."""
    settings = get_settings()
    reap_once(settings=settings, dispatcher=CeleryDispatcher(settings))


class EmbeddedWorker:
    """`pare serve` without a broker: one thread that claims queued jobs from the database."""

    def __init__(self, settings: Settings, *, poll_seconds: float = 2.0) -> None:
        self.settings, self.poll_seconds = settings, poll_seconds
        self._wake, self._stop = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._loop, name="pare-embedded-worker", daemon=True)
        self.dispatcher = NullDispatcher(wake=self._wake.set)

    def start(self) -> None:
        try:  # what runs killed in an earlier life of this process left behind
            scratch.sweep(database_url=self.settings.database_url, work_dir=self.settings.work_dir)
        except Exception:  # noqa: BLE001 - the reaper sweeps again on its next pass
            log.warning("scratch sweep at start failed", exc_info=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)

    def _next_jobs(self) -> list[str]:
        with session_scope(self.settings.database_url) as session:
            return list(
                session.scalars(select(Job.id).where(Job.status == "queued").order_by(Job.id).limit(10))
            )

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.poll_seconds)
            self._wake.clear()
            try:
                for job_id in self._next_jobs():
                    if self._stop.is_set():
                        return
                    execute_job(job_id=job_id, settings=self.settings)
            except Exception:  # noqa: BLE001 - keep serving; the reaper recovers half-done jobs
                log.exception("embedded worker pass failed")

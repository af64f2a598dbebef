"""What every fault test checks once the dust settles, read straight from Postgres and storage:
jobs terminal, transitions in their events, one artifact set per succeeded job whose stored bytes
hash to the sha256 the database recorded, and no stored object that no row accounts for."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from app.db.engine import session_scope
from app.db.models import TERMINAL, Artifact, Job, JobEvent
from tests.service import helpers


def jobs(settings, job_ids: Iterable[str]) -> dict[str, Job]:  # type: ignore[no-untyped-def]
    """The jobs' rows as the database has them now."""
    ids = list(job_ids)
    with session_scope(settings.database_url) as session:
        return {job.id: job for job in session.scalars(select(Job).where(Job.id.in_(ids)))}


def wait_terminal(settings, job_ids: Iterable[str], timeout: float) -> dict[str, Job]:  # type: ignore[no-untyped-def]
    """Wait until every job is succeeded, failed or cancelled; returns their rows."""
    ids = list(job_ids)

    def done() -> dict[str, Job] | None:
        rows = jobs(settings, ids)
        return rows if len(rows) == len(ids) and all(j.status in TERMINAL for j in rows.values()) else None

    try:
        return helpers.wait_for(done, timeout=timeout, interval=0.5)  # type: ignore[no-any-return]
    except AssertionError:
        rows = jobs(settings, ids)
        states = {i: (j.status, j.attempt, (j.progress or {}).get("stage")) for i, j in rows.items()}
        raise AssertionError(f"not all terminal after {timeout}s: {states}") from None


def events(settings, job_id: str) -> list[tuple[int, str, dict[str, Any]]]:  # type: ignore[no-untyped-def]
    """(seq, type, data) of the job's events, in order."""
    with session_scope(settings.database_url) as session:
        rows = session.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.seq))
        return [(r.seq, r.type, r.data) for r in rows]


def transitions(settings, job_id: str) -> list[str]:  # type: ignore[no-untyped-def]
    """The job's state-changing events in order (progress and webhook events left out), after
    checking that its event sequence has no gap: a transition and its event commit together."""
    rows = events(settings, job_id)
    assert [seq for seq, _, _ in rows] == list(range(1, len(rows) + 1)), rows
    return [t for _, t, _ in rows if t.startswith("job.")]


@dataclass(frozen=True)
class ArtifactSet:
    fences: set[int]
    names: list[str]
    mismatched: list[str]  # stored bytes whose sha256 or size differ from the row


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def artifact_set(settings, job: Job) -> ArtifactSet:  # type: ignore[no-untyped-def]
    """The job's artifact rows, grouped by the fence in their storage keys, with every stored
    file hashed and compared with its row."""
    base = Path(settings.storage_url)
    with session_scope(settings.database_url) as session:
        rows = session.scalars(select(Artifact).where(Artifact.job_id == job.id)).all()
    fences, mismatched = set(), []
    for row in rows:
        prefix, owner, fence, _ = row.storage_key.split("/", 3)
        assert prefix == "jobs" and owner == job.id, row.storage_key
        fences.add(int(fence))
        path = base / row.storage_key
        if not path.is_file() or path.stat().st_size != row.size_bytes or sha256_of(path) != row.sha256:
            mismatched.append(row.name)
    return ArtifactSet(fences, [r.name for r in rows], mismatched)


def assert_one_artifact_set(settings, job: Job) -> None:  # type: ignore[no-untyped-def]
    """One set of artifacts (the final fence's, no name twice, config and weights in it), each
    stored file's sha256 and size equal to its row's."""
    found = artifact_set(settings, job)
    assert found.fences == {job.fence}, (job.id, found.fences, job.fence)
    assert len(set(found.names)) == len(found.names), found.names
    assert "config.json" in found.names and any(n.endswith(".safetensors") for n in found.names)
    assert not found.mismatched, found.mismatched


def unrecorded_objects(settings) -> list[str]:  # type: ignore[no-untyped-def]
    """Files under storage's jobs/ that no artifact row names: the leftovers of runs that did not
    commit (a killed upload, a fenced-out run that did not clean up)."""
    base = Path(settings.storage_url)
    with session_scope(settings.database_url) as session:
        recorded = set(session.scalars(select(Artifact.storage_key)))
    stored = {p.relative_to(base).as_posix() for p in (base / "jobs").rglob("*") if p.is_file()}
    return sorted(stored - recorded)

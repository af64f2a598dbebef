"""What a shared host must not keep: scratch of killed runs, world-readable secrets."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import httpx
from sqlalchemy import text

from app.db.engine import get_engine, session_scope
from app.db.models import Artifact, Job
from app.services import retention, scratch
from app.storage import make_storage
from tests.factories import insert_queued
from tests.reliability import record


def test_sweep_removes_scratch_of_dead_runs_only(  # type: ignore[no-untyped-def]
    client_a: httpx.Client, dataset_id: str, settings, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    finished = insert_queued(settings, client_a, dataset_id)
    running = insert_queued(settings, client_a, dataset_id)
    with session_scope(settings.database_url) as session:
        session.get(Job, finished).status = "succeeded"
        session.get(Job, running).status, session.get(Job, running).fence = "running", 3
    paths = {
        "finished": work / finished / "1",
        "old fence": work / running / "2",
        "current fence": work / running / "3",
        "newer fence": work / running / "4",  # claimed after the sweep read the row: kept
        "unknown job": work / "job_0123456789abcdef01234567" / "1",
    }
    for path in paths.values():
        (path / "data").mkdir(parents=True)
        (path / "data" / "calib.jsonl").write_bytes(b"x" * 1000)
    spool = work / "uploads"
    spool.mkdir()
    (spool / "upload-old").write_bytes(b"x")
    (spool / "upload-new").write_bytes(b"x")
    os.utime(spool / "upload-old", (time.time() - 7200, time.time() - 7200))
    (work / "not-a-job").mkdir()
    removed = scratch.sweep(database_url=settings.database_url, work_dir=work)
    assert not paths["finished"].exists() and not (work / finished).exists()
    assert not paths["old fence"].exists() and not paths["unknown job"].exists()
    assert paths["current fence"].exists() and paths["newer fence"].exists()
    assert not (spool / "upload-old").exists() and (spool / "upload-new").exists()
    assert (work / "not-a-job").exists()  # only what Pare names is touched
    assert len(removed) == 4
    record("scratch of killed runs", test="tests/service/test_hygiene.py", stale_paths=4,
           removed=len(removed),
           live_runs_kept=2)


def test_objects_no_run_can_record_are_deleted(  # type: ignore[no-untyped-def]
    client_a: httpx.Client, dataset_id: str, settings, tmp_path: Path
) -> None:
    """Objects of a killed run (an earlier fence) and unrecorded objects of a finished job go;
    the recorded artifacts and the objects of the run that holds the job's fence stay."""
    storage = make_storage(settings)
    src = tmp_path / "part.bin"
    src.write_bytes(b"weights")
    running = insert_queued(settings, client_a, dataset_id)
    finished = insert_queued(settings, client_a, dataset_id)
    keys = {
        "killed run": f"jobs/{running}/1/model.safetensors",
        "current run": f"jobs/{running}/3/model.safetensors",
        "recorded": f"jobs/{finished}/2/model.safetensors",
        "finished, unrecorded": f"jobs/{finished}/1/config.json",
    }
    for key in keys.values():
        storage.put_file(key, src)
    with session_scope(settings.database_url) as session:
        job = session.get(Job, running)
        job.status, job.fence = "running", 3
        done = session.get(Job, finished)
        done.status, done.fence = "succeeded", 2
        session.add(Artifact(job_id=finished, name="model.safetensors", storage_key=keys["recorded"],
                             size_bytes=7, sha256="0" * 64, content_type="application/octet-stream"))
    deleted = retention.sweep_objects_of(settings, [running, finished, "job_0123456789abcdef01234567"])
    assert sorted(deleted) == sorted([keys["killed run"], keys["finished, unrecorded"]])
    assert storage.list_keys(f"jobs/{running}/") == [keys["current run"]]
    assert storage.list_keys(f"jobs/{finished}/") == [keys["recorded"]]
    assert retention.sweep_objects_of(settings, [running, finished]) == []  # nothing more to do
    record("orphan objects of killed runs", test="tests/service/test_hygiene.py",
           orphans_planted=2, deleted=len(deleted),
           kept=len(storage.list_keys(f"jobs/{running}/") + storage.list_keys(f"jobs/{finished}/")))


def test_embedded_database_is_private(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh' / 'pare.db'}"
    with get_engine(url).connect() as conn:
        conn.execute(text("CREATE TABLE t (x int)"))
        conn.execute(text("INSERT INTO t VALUES (1)"))
    for path in (tmp_path / "fresh").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, (path, oct(path.stat().st_mode))
    assert stat.S_IMODE((tmp_path / "fresh").stat().st_mode) == 0o700
    existing = tmp_path / "old.db"
    existing.write_bytes(b"")
    existing.chmod(0o644)
    get_engine(f"sqlite:///{existing}")
    assert stat.S_IMODE(existing.stat().st_mode) == 0o600

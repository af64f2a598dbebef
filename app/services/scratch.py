"""Scratch space of runs that will never clean up after themselves (killed workers, lost pods).

A run works in `<work_dir>/<job_id>/<fence>/` and removes it when it ends; a run killed with
SIGKILL leaves it behind. `sweep` removes every run directory whose job is gone, is terminal, or
has moved on to a newer fence (the old run is fenced out: nothing it writes can count), and upload
spool files older than `spool_max_age_seconds`. The reaper calls it on each pass and each worker
at start, so a host's disk holds scratch only for runs that can still finish.
"""

from __future__ import annotations

import logging
import re
import shutil
import time
from pathlib import Path

from sqlalchemy import select

from app.db.engine import session_scope
from app.db.models import TERMINAL, Job
from app.ids import JOB_ID_PATTERN

log = logging.getLogger(__name__)
SPOOL = "uploads"
_JOB_DIR = re.compile(JOB_ID_PATTERN)


def sweep(*, database_url: str, work_dir: Path, spool_max_age_seconds: float = 3600.0) -> list[Path]:
    """Remove stale run directories and spool files under work_dir; returns what was removed."""
    root = Path(work_dir)
    if not root.is_dir():
        return []
    # listed before the database is read: a run that claims the job meanwhile has a higher fence
    # than the row read here, and a fence directory is removed only when it is below the row's
    runs = {
        d.name: [r for r in d.iterdir() if r.is_dir()]
        for d in root.iterdir()
        if d.is_dir() and _JOB_DIR.match(d.name)
    }
    removed: list[Path] = []
    if runs:
        with session_scope(database_url) as session:
            rows = session.execute(select(Job.id, Job.status, Job.fence).where(Job.id.in_(list(runs)))).all()
        live = {job_id: fence for job_id, status, fence in rows if status not in TERMINAL}
        for job_id, run_dirs in runs.items():
            for run in run_dirs:
                stale = job_id not in live or (run.name.isdigit() and int(run.name) < live[job_id])
                if stale:
                    shutil.rmtree(run, ignore_errors=True)
                    removed.append(run)
            if job_id not in live:
                shutil.rmtree(root / job_id, ignore_errors=True)
    spool = root / SPOOL
    if spool.is_dir():
        cutoff = time.time() - spool_max_age_seconds
        for tmp in spool.iterdir():
            try:
                if tmp.is_file() and tmp.stat().st_mtime < cutoff:
                    tmp.unlink()
                    removed.append(tmp)
            except FileNotFoundError:
                continue
    if removed:
        log.info("scratch sweep removed %d paths under %s", len(removed), root)
    return removed

"""The reaper: re-queues runs whose lease expired, fails them after max_attempts (`worker_lost`),
finishes abandoned cancellations, and re-publishes queued jobs the broker may have lost."""

from __future__ import annotations

import logging
import threading

from app.db.engine import session_scope
from app.db.jobstate import ReapReport, reap
from app.queue import Dispatcher
from app.services import retention, scratch, webhooks
from app.settings import Settings
from app.storage import make_storage

log = logging.getLogger(__name__)


def reap_once(*, settings: Settings, dispatcher: Dispatcher) -> ReapReport:
    """One pass: transitions in one transaction, then publishes (a lost publish is retried later)."""
    with session_scope(settings.database_url) as session:
        report = reap(session, republish_after_seconds=settings.republish_after_seconds)
    for job_id in report.requeued + report.republish:
        try:
            dispatcher.publish(job_id)
        except Exception:  # noqa: BLE001 - the broker may be down; the next pass publishes again
            log.warning("could not publish %s", job_id, exc_info=True)
    for job_id in report.failed + report.cancelled:
        webhooks.schedule(settings=settings, job_id=job_id)
    retention.sweep_objects_of(settings, report.failed + report.cancelled + report.requeued)
    scratch.sweep(database_url=settings.database_url, work_dir=settings.work_dir)
    if settings.retention_days > 0:
        with session_scope(settings.database_url) as session:
            expired = retention.expire(session, storage=make_storage(settings),
                                       older_than_days=settings.retention_days)
        if any(expired.values()):
            log.info("retention: deleted %s", expired)
    if report.requeued or report.failed or report.cancelled or report.republish:
        log.info("reaper: %s", report)
    return report


class ReaperLoop:
    """A daemon thread calling reap_once every `interval` seconds until stopped."""

    def __init__(self, *, settings: Settings, dispatcher: Dispatcher) -> None:
        self.settings, self.dispatcher = settings, dispatcher
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pare-reaper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.settings.reaper_interval_seconds):
            try:
                reap_once(settings=self.settings, dispatcher=self.dispatcher)
            except Exception:  # noqa: BLE001 - e.g. the database is down; try again next tick
                log.warning("reaper pass failed", exc_info=True)

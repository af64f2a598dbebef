"""Celery configuration shared by the API (which only publishes, by task name) and the workers."""

from __future__ import annotations

import logging
from typing import Any, Protocol

from app.settings import Settings
from core.tasks import REAP, RUN_JOB

log = logging.getLogger(__name__)


def celery_config(settings: Settings) -> dict[str, Any]:
    """Late acks, prefetch 1, Redis visibility timeout above the longest job, one default queue."""
    transport: dict[str, Any] = {"visibility_timeout": settings.visibility_timeout_seconds}
    if settings.broker_key_prefix:
        transport["global_keyprefix"] = settings.broker_key_prefix
    return {
        "broker_url": settings.broker_url,
        "broker_transport_options": transport,
        "broker_connection_retry_on_startup": True,
        "task_default_queue": settings.queue,
        "task_acks_late": True,
        "task_reject_on_worker_lost": False,  # the reaper re-queues from the database instead
        "worker_prefetch_multiplier": 1,
        "worker_concurrency": 1,
        "task_ignore_result": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "worker_hijack_root_logger": False,
        "beat_schedule": {
            "pare-reaper": {"task": REAP, "schedule": max(settings.reaper_interval_seconds, 5.0)},
        },
    }


class Dispatcher(Protocol):
    """How the API hands a queued job to workers."""

    def publish(self, job_id: str) -> None: ...

    def ping(self) -> bool: ...


class CeleryDispatcher:
    """Sends `pare.run_job` by name; the API never imports workers.tasks."""

    def __init__(self, settings: Settings) -> None:
        from celery import Celery

        self.settings = settings
        self.celery = Celery("pare-api")
        self.celery.conf.update(celery_config(settings))

    def publish(self, job_id: str) -> None:
        self.celery.send_task(RUN_JOB, args=[job_id], queue=self.settings.queue)

    def ping(self) -> bool:
        try:
            with self.celery.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=2)
            return True
        except Exception:  # noqa: BLE001 - any broker failure means "not ready"
            log.warning("broker unreachable", exc_info=True)
            return False


class NullDispatcher:
    """For processes that only write the database (the embedded worker polls it)."""

    def __init__(self, wake: Any = None) -> None:
        self.wake = wake

    def publish(self, job_id: str) -> None:
        if self.wake is not None:
            self.wake()

    def ping(self) -> bool:
        return True

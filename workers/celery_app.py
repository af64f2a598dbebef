"""The Celery application of `pare worker`: late acks, prefetch 1, one process per GPU.

The broker URL and options come from app.settings (PARE_BROKER_URL ...); tasks are registered
by name from workers.tasks. Nothing here touches CUDA, so the prefork parent never initialises
it before forking the child that runs jobs.
"""

from __future__ import annotations

from celery import Celery

from app.queue import celery_config
from app.settings import Settings, get_settings


def create_celery_app(settings: Settings | None = None) -> Celery:
    """A Celery app configured from settings, with workers.tasks registered."""
    settings = settings or get_settings()
    celery = Celery("pare", include=["workers.tasks"])
    celery.conf.update(celery_config(settings))
    return celery


app = create_celery_app()

"""The FastAPI application factory (`uvicorn --factory app.main:create_app`, or `pare serve`)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.api import openapi, problems
from app.api.cache import TtlCache
from app.api.deps import Database
from app.api.limits import BodySizeLimit
from app.api.metrics import MetricsMiddleware
from app.api.routes import artifacts, datasets, events, jobs, meta
from app.db.engine import session_factory
from app.queue import CeleryDispatcher, Dispatcher, NullDispatcher
from app.services.quotas import RateLimiter
from app.services.reaper import ReaperLoop
from app.settings import Settings, get_settings
from app.storage import make_storage

log = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None, *, dispatcher: Dispatcher | None = None, reaper: bool = True
) -> FastAPI:
    """Build the API. Without a dispatcher, jobs go to Celery when PARE_BROKER_URL is set."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.sessions = session_factory(settings.database_url)
        app.state.database = Database(
            app.state.sessions, session_factory(settings.database_url, read_only=True)
        )
        app.state.key_cache = TtlCache(settings.key_cache_seconds)
        app.state.job_cache = TtlCache(settings.job_cache_seconds)
        app.state.storage = make_storage(settings)
        app.state.rate_limiter = RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst)
        app.state.dispatcher = dispatcher or (
            CeleryDispatcher(settings) if settings.broker_url else NullDispatcher()
        )
        loop = None
        if reaper and settings.reaper_interval_seconds > 0:
            loop = ReaperLoop(settings=settings, dispatcher=app.state.dispatcher)
            loop.start()
        yield
        if loop is not None:
            loop.stop()

    app = FastAPI(
        title="Pare",
        version="0.1.0",
        description="Retraining-free post-training compression of transformer models under a MAC budget.",
        lifespan=lifespan,
    )
    problems.install(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware)
    for module in (jobs, events, artifacts, datasets, meta):
        app.include_router(module.router)
    openapi.install(app, settings)
    return app

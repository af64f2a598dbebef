"""Per-tenant limits of a shared service: concurrent jobs, stored bytes, requests per second.

All are settings (0 turns one off) and every refusal is 429 problem+json with Retry-After:
- `PARE_MAX_ACTIVE_JOBS_PER_TENANT`: queued, running and cancelling jobs at once (checked at submit);
- `PARE_MAX_STORAGE_BYTES_PER_TENANT`: uploaded datasets plus artifacts (checked at upload and at
  submit: a tenant over its quota deletes something, or waits for the retention pass, first);
- `PARE_RATE_LIMIT_PER_SECOND` / `PARE_RATE_LIMIT_BURST`: a token bucket per tenant and API process
  (with N API processes a tenant gets at most N times the rate; put a shared limiter in the proxy
  when that matters).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.models import UNFINISHED, Artifact, Dataset, Job
from app.errors import ServiceError
from app.settings import Settings


class QuotaExceeded(ServiceError):
    status, code, title = 429, "quota_exceeded", "Quota exceeded"


class RateLimited(ServiceError):
    status, code, title = 429, "rate_limited", "Too many requests"


def stored_bytes(session: Session, *, tenant_id: str) -> int:
    """Bytes this tenant holds in storage: its datasets and its jobs' artifacts."""
    datasets = session.scalar(
        select(func.coalesce(func.sum(Dataset.size_bytes), 0)).where(Dataset.tenant_id == tenant_id)
    )
    artifacts = session.scalar(
        select(func.coalesce(func.sum(Artifact.size_bytes), 0))
        .join(Job, Job.id == Artifact.job_id)
        .where(Job.tenant_id == tenant_id)
    )
    return int(datasets or 0) + int(artifacts or 0)


def check_storage(session: Session, *, tenant_id: str, settings: Settings, adding: int = 0) -> None:
    limit = settings.max_storage_bytes_per_tenant
    if limit <= 0:
        return
    held = stored_bytes(session, tenant_id=tenant_id)
    if held + adding > limit:
        raise QuotaExceeded(
            f"this tenant stores {held} bytes; {adding} more would pass its quota of {limit} bytes "
            "(delete datasets or artifacts with DELETE, or wait for the retention pass)",
            field="storage",
            headers={"Retry-After": str(max(60, int(settings.reaper_interval_seconds)))},
        )


def check_active_jobs(session: Session, *, tenant_id: str, settings: Settings) -> None:
    limit = settings.max_active_jobs_per_tenant
    if limit <= 0:
        return
    active = session.scalar(
        select(func.count()).select_from(Job).where(Job.tenant_id == tenant_id, Job.status.in_(UNFINISHED))
    )
    if int(active or 0) >= limit:
        raise QuotaExceeded(
            f"this tenant has {active} unfinished jobs, its limit is {limit}; retry when one ends",
            field="jobs",
            headers={"Retry-After": "30"},
        )


class RateLimiter:
    """Token buckets keyed by tenant: `rate` tokens per second, at most `burst` saved up."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.clock = rate, max(1, burst), clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> None:
        """Spend a token of `key`, or raise RateLimited with the seconds until the next one."""
        if self.rate <= 0:
            return
        with self._lock:
            now = self.clock()
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                wait = math.ceil((1.0 - tokens) / self.rate)
                raise RateLimited(
                    f"more than {self.rate:g} requests per second (burst {self.burst}); retry in {wait} s",
                    headers={"Retry-After": str(max(1, wait))},
                )
            self._buckets[key] = (tokens - 1.0, now)
            if len(self._buckets) > 100_000:  # forget idle tenants; a full bucket is the default
                self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < 3600}

"""Small per-process caches of the API's hot reads, each entry kept `ttl` seconds.

- API keys -> tenant (PARE_KEY_CACHE_SECONDS, default 5): a revoked key keeps working that long.
- Rendered GET /v1/jobs/{id} bodies (PARE_JOB_CACHE_SECONDS, default 1): clients poll job status,
  and many pollers of one job within a second each cost a query and a render. A job read through
  the API is at most that old; a cancel through this process evicts at once; progress written by
  workers shows up within `ttl` (`GET /v1/jobs/{id}/events` streams it live). Keys include the tenant,
  so another tenant's key still gets 404.

`ttl` 0 turns a cache off. Expiry reads `clock` (default `time.monotonic`; tests pass a fake one to
step time instead of sleeping). Misses are single-flight: requests for one key arriving while it is being
loaded wait for that load instead of each querying (a burst arriving just after an entry expired
would otherwise send every request to the database at once).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    def __init__(
        self, ttl: float, max_entries: int = 10_000, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl, self.max_entries, self.clock = ttl, max_entries, clock
        self._entries: dict[K, tuple[V, float]] = {}
        self._lock = threading.Lock()
        self._loading: dict[K, asyncio.Future[V]] = {}

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None or entry[1] < self.clock():
            return None
        return entry[0]

    def put(self, key: K, value: V) -> None:
        if self.ttl <= 0:
            return
        with self._lock:
            if len(self._entries) >= self.max_entries:  # bounded: drop the expired, else everything
                now = self.clock()
                self._entries = {k: v for k, v in self._entries.items() if v[1] >= now}
                if len(self._entries) >= self.max_entries:
                    self._entries.clear()
            self._entries[key] = (value, self.clock() + self.ttl)

    def evict(self, key: K) -> None:
        with self._lock:
            self._entries.pop(key, None)

    async def fetch(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        """The cached value, the result of a load already under way, or `await load()` (cached)."""
        hit = self.get(key)
        if hit is not None:
            return hit
        if self.ttl <= 0:
            return await load()
        pending = self._loading.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        try:
            value = await load()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody was waiting
            raise
        else:
            self.put(key, value)
            future.set_result(value)
            return value
        finally:
            del self._loading[key]

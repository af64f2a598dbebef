"""Fuzzing the parsers: the data readers and upload validators, and the artifact loader.

Each module runs hypothesis with bounded examples (scaled by $PARE_FUZZ_SCALE, default 1) and
records the examples it ran and the unhandled exceptions it met (`tests.reliability.record`).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings

from tests.reliability import record

ROW = "fuzzing the parsers"
SCALE = float(os.environ.get("PARE_FUZZ_SCALE", "1"))
T = TypeVar("T")


def fuzz(examples: int) -> settings:
    """Hypothesis settings for one fuzz test: `examples` × SCALE examples, no deadline (torch and
    datasets have slow first calls), function-scoped fixtures allowed (each example makes its
    own files under a fresh name), no example database (nothing left in the working tree)."""
    return settings(
        max_examples=max(1, round(examples * SCALE)),
        deadline=None,
        database=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )


class Tally:
    """Examples run and unhandled exceptions met by one test module, recorded when it ends."""

    def __init__(self, test: str) -> None:
        self.test = test
        self.counts: Counter[str] = Counter()

    @contextmanager
    def case(self) -> Iterator[None]:
        """One hypothesis example: counted; an exception escaping it counts as unhandled."""
        self.counts["cases"] += 1
        try:
            yield
        except Exception:
            self.counts["unhandled"] += 1
            raise

    def outcome(self, call: Callable[[], T], errors: tuple[type[Exception], ...],
                codes: set[str] | None = None) -> T | Exception:
        """call()'s value, or the project error it raised (it must carry a code, one of `codes` if
        given); any other exception propagates (and fails the test)."""
        try:
            return call()
        except errors as exc:
            code: Any = getattr(exc, "code", None)
            assert isinstance(code, str) and code, f"{type(exc).__name__} without a code: {exc}"
            assert codes is None or code in codes, f"unexpected code {code!r}: {exc}"
            return exc

    @contextmanager
    def recording(self) -> Iterator[None]:
        """Around a module's tests (a module-scoped fixture): its figures, recorded at the end."""
        started = time.monotonic()
        try:
            yield
        finally:
            record(ROW, test=self.test, cases=self.counts["cases"], unhandled=self.counts["unhandled"],
                   seconds=round(time.monotonic() - started, 1))

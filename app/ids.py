"""Resource ids: a prefix, 12 hex digits of milliseconds, 12 random hex digits (sortable by creation)."""

from __future__ import annotations

import secrets
import time


def new_id(prefix: str) -> str:
    """A new id such as job_0190a1b2c3d4e5f6a7b8c9d0, increasing with creation time."""
    return f"{prefix}_{int(time.time() * 1000):012x}{secrets.token_hex(6)}"

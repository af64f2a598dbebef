"""Resource ids: a prefix, 12 hex digits of milliseconds, 12 random hex digits (sortable by creation).

The patterns are part of the API schema: a path or query value that does not match is refused with
422 before it reaches the database (a NUL byte or a 30-digit number never becomes a query).
"""

from __future__ import annotations

import secrets
import time

JOB_ID_PATTERN = r"^job_[0-9a-f]{24}$"
DATASET_ID_PATTERN = r"^ds_[0-9a-f]{24}$"
# An artifact name as the workers write them: a relative POSIX path of letters, digits and `_.-`
# whose components do not start with '.' (so never '.' or '..')
ARTIFACT_NAME_PATTERN = r"^[A-Za-z0-9_\-][A-Za-z0-9_.\-]*(/[A-Za-z0-9_\-][A-Za-z0-9_.\-]*)*$"
MAX_ARTIFACT_NAME = 500
MAX_SEQ = 2**63 - 1  # event sequence numbers are BIGINT


def new_id(prefix: str) -> str:
    """A new id such as job_0190a1b2c3d4e5f6a7b8c9d0, increasing with creation time."""
    return f"{prefix}_{int(time.time() * 1000):012x}{secrets.token_hex(6)}"

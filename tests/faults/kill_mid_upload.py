"""Imported first by a worker process under test: the process SIGKILLs itself right after its
first artifact object is stored, in the middle of a run's upload. The kill is real; only its
moment is chosen (random kills land in this window too rarely to test it on purpose)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from app.storage import LocalStorage, StoredObject

_put_file = LocalStorage.put_file


def _put_file_then_die(self: LocalStorage, key: str, src: Path) -> StoredObject:
    stored = _put_file(self, key, src)
    if key.startswith("jobs/"):
        os.kill(os.getpid(), signal.SIGKILL)
    return stored


LocalStorage.put_file = _put_file_then_die  # type: ignore[method-assign]

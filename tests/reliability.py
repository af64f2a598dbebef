"""Figures for docs/reliability.md, recorded by the fault, threat, fuzz and contract tests as they run.

`record(row, **figures)` appends one JSON line to the file named by $PARE_RELIABILITY_LOG (nothing
is written when it is unset). `scripts/reliability_report.py` turns that file into
docs/reliability.md. A row names a line of the fault and threat table (RELIABILITY.md), e.g.
"worker killed mid-job"; figures are plain numbers or short strings (faults injected, jobs run,
jobs lost, duplicated artifacts, cases, failures, seconds).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any


def record(row: str, *, test: str, **figures: Any) -> None:
    """Append {row, test, figures, at} to $PARE_RELIABILITY_LOG, if set."""
    target = os.environ.get("PARE_RELIABILITY_LOG")
    if not target:
        return
    line = json.dumps({"row": row, "test": test, "figures": figures, "at": time.time()}, default=str)
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(line + "\n")

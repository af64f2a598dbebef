"""What every benchmark result records besides its numbers, so a figure can be traced and re-run.

`write_result` writes bench/results/<name>.json: the payload plus the command line, the git commit,
the machine, library versions, seeds, the sha256 of every data file read, the protocol, and a UTC
timestamp.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"


def git_commit() -> str | None:
    """HEAD's sha, with "+dirty" when tracked files differ from it; None outside a checkout."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_description() -> dict[str, Any]:
    """CPU model and cores, torch threads, and the CUDA device when there is one."""
    info: dict[str, Any] = {"cpu": _cpu_model(), "cores": os.cpu_count(), "platform": platform.platform()}
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["cuda_device"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in ("torch", "transformers", "numpy"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            versions[name] = None
    return versions


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_result(
    name: str,
    payload: dict[str, Any],
    *,
    seeds: dict[str, Any] | None = None,
    data_files: Iterable[Path] = (),
    protocol: dict[str, Any] | None = None,
    results_dir: Path | None = None,
) -> Path:
    """Write <results_dir or bench/results>/<name>.json and return its path."""
    record = {
        **payload,
        "command": sys.argv,
        "git_commit": git_commit(),
        "device": machine_description(),
        "versions": library_versions(),
        "seeds": seeds or {},
        "data": {str(path): sha256_file(Path(path)) for path in data_files},
        "protocol": protocol or {},
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    folder = results_dir or RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{name}.json"
    out.write_text(json.dumps(record, indent=2, default=str) + "\n")
    return out

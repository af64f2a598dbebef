"""Jobs run in a fresh Python process, so that the peak memory they report is theirs alone.

    python -m bench.jobs KIND 'JSON'     (KIND: speed | scale; prints one JSON line last)

The peak is the process' resident-set high-water mark, `resource.getrusage(RUSAGE_SELF).ru_maxrss`
(KiB on Linux), read at checkpoints: it never decreases, so the value read right after compression
is the peak of everything up to then (interpreter, torch, the loaded model, calibration and
compression), the honest figure for "how much memory does a compression job need". tracemalloc
does not see torch's allocations and is not used. On CUDA, torch.cuda.max_memory_allocated is
reported beside it.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import subprocess
import sys
import time
from typing import Any

from bench.common import REPO

log = logging.getLogger(__name__)


def peak_rss_mb() -> float:
    """Peak resident set of this process so far, MiB (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cuda_peak_mb(device: str) -> float | None:
    import torch

    if not device.startswith("cuda") or not torch.cuda.is_available():
        return None
    return torch.cuda.max_memory_allocated() / 2**20


def run_in_subprocess(kind: str, job: dict[str, Any], *, timeout: float | None = None) -> dict[str, Any]:
    """Run one job in a fresh interpreter; its stderr (progress) passes through. Returns its JSON,
    plus "process_seconds" (wall time of the whole child, imports included), or {"error": ...}."""
    start = time.perf_counter()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "bench.jobs", kind, json.dumps(job)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {**job, "error": f"timed out after {timeout} s"}
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or not lines:
        return {**job, "error": f"job exited with status {proc.returncode}"}
    result = json.loads(lines[-1])
    result["process_seconds"] = time.perf_counter() - start
    return result


def main(argv: list[str]) -> int:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    kind, job = argv[0], json.loads(argv[1])
    import torch

    if job.get("threads"):
        torch.set_num_threads(int(job["threads"]))
    if kind == "speed":
        from bench.speed import speed_job as fn
    elif kind == "scale":
        from bench.scale import scale_job as fn
    else:
        raise SystemExit(f"unknown job kind {kind!r}")
    result = fn(job)
    result["torch_threads"] = torch.get_num_threads()
    print(json.dumps(result, default=str), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

"""Run one `pare compress --json` command and keep its summary as a benchmark result.

    python -m bench.cli_run NAME -- pare compress --model ... --json

The result JSON (bench/results/cli/NAME.json) holds the exact command, the summary `pare
compress` printed, and the provenance `write_result` adds (commit, machine, versions, data sha256).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from bench.common import write_result

RESULTS = Path(__file__).resolve().parent / "results" / "cli"


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    name, command = argv[0], argv[2:]
    started = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        return proc.returncode
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    data = [Path(p["data"]) for p in summary.get("protocols", {}).values() if "data" in p]
    payload = {"command": command, "summary": summary, "wall_seconds": time.perf_counter() - started}
    path = write_result(name, payload, seeds={"calibration": 0}, data_files=data,
                        protocol=summary.get("protocols"),
                        results_dir=RESULTS)
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

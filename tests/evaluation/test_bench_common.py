"""bench/common.write_result records provenance beside the payload."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from bench.common import machine_description, write_result


def test_write_result_records_provenance(tmp_path: Path) -> None:
    data = tmp_path / "d.txt"
    data.write_text("abc")
    out = write_result(
        "demo",
        {"score": 1.5},
        seeds={"seed": 3},
        data_files=[data],
        protocol={"seq_len": 8},
        results_dir=tmp_path / "results",
    )
    record = json.loads(out.read_text())
    assert out == tmp_path / "results" / "demo.json"
    assert record["score"] == 1.5 and record["seeds"] == {"seed": 3} and record["protocol"] == {"seq_len": 8}
    assert record["data"] == {str(data): hashlib.sha256(b"abc").hexdigest()}
    assert len(record["git_commit"].split("+")[0]) == 40
    assert {"python", "torch", "transformers", "numpy"} <= set(record["versions"])
    assert record["timestamp"].endswith("+00:00") and isinstance(record["command"], list)


def test_machine_description() -> None:
    info = machine_description()
    assert info["cores"] >= 1 and info["cpu"]

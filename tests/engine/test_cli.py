"""`pare compress` from the outside: a subprocess, a tiny local model, the JSON contract."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests import factories

CONTRACT_KEYS = {
    "mac_ratio", "mac_ratio_model", "params_before", "params_after", "seconds", "artifact", "metrics"
}


def pare(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def llama_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return factories.save_tiny_llama(tmp_path_factory.mktemp("llama"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return factories.write_corpus(tmp_path_factory.mktemp("data") / "corpus.txt", repeat=40)


@pytest.mark.parametrize("method", ["id", "svd", "magnitude", "block_lowrank", "monarch", "mpo"])
def test_compress_prints_the_contract_json_last(
    llama_model: Path, corpus: Path, tmp_path: Path, method: str
) -> None:
    out = tmp_path / "artifact"
    proc = pare("compress", "--model", str(llama_model), "--method", method, "--mac-target", "0.6",
                "--calibration", str(corpus), "--num-samples", "8", "--seq-len", "32",
                "--eval", f"perplexity:{corpus}", "--eval-opt", "perplexity.seq_len=32",
                "--device", "cpu", "--out", str(out), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert CONTRACT_KEYS <= result.keys()
    assert 0.59 <= result["mac_ratio"] <= 0.6
    assert result["mac_ratio_model"] > result["mac_ratio"]  # the LM head is not compressed
    assert result["params_after"] < result["params_before"]
    assert set(result["metrics"]) == {"baseline", "compressed"}
    assert result["metrics"]["compressed"]["perplexity"] > 0
    assert Path(result["artifact"]) == out and (out / "compression.json").is_file()
    assert "compressing" in proc.stderr  # the progress bar names the stage
    manifest = json.loads((out / "compression.json").read_text())
    kinds = {entry["type"] for entry in manifest["structure"]["modules"].values()}
    assert kinds - {"linear"} == ({method} if method in ("block_lowrank", "monarch", "mpo") else
                                  {"lowrank"} if method == "svd" else set())


def test_bad_input_gets_one_clear_line_and_exit_2(llama_model: Path, corpus: Path, tmp_path: Path) -> None:
    cases = [
        (["--mac-target", "1.5"], "--mac-target"),
        (["--mac-target", "0.5", "--param", "bogus=1"], "bogus"),
        (["--mac-target", "0.5", "--param", "damping=NaN"], "damping"),
        (["--mac-target", "0.5", "--param", "allocation=sideways"], "allocation"),
        (["--mac-target", "0.9,x"], "--mac-target"),
        (["--mac-target", "0.9,0.9"], "repeats"),
        ([], "--mac-target"),
        (["--max-drop", "0.01"], "--metric"),
        (["--mac-target", "0.5", "--max-ratio", "1.1", "--metric", "perplexity"], "not both"),
        (["--max-ratio", "0.5", "--metric", "perplexity"], "--max-ratio"),
    ]
    for extra, needle in cases:
        proc = pare("compress", "--model", str(llama_model), "--method", "id", "--calibration", str(corpus),
                    "--num-samples", "4", "--seq-len", "16", "--out", str(tmp_path / "x"), *extra,
                    cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        assert needle in proc.stderr and "Traceback" not in proc.stderr
    proc = pare("compress", "--model", str(llama_model), "--method", "id", "--mac-target", "0.5",
                "--calibration", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "y"), cwd=tmp_path)
    assert proc.returncode == 2 and "missing.txt" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_arguments_are_checked_before_any_model_is_loaded(tmp_path: Path) -> None:
    """A bad parameter is reported even when the model and data do not exist: nothing was loaded."""
    proc = pare("compress", "--model", str(tmp_path / "no-model"), "--method", "svd", "--mac-target", "0.5",
                "--calibration", str(tmp_path / "no-data.txt"), "--param", "activation_aware=maybe",
                "--out", str(tmp_path / "x"), cwd=tmp_path)
    assert proc.returncode == 2 and "activation_aware" in proc.stderr, proc.stderr
    assert "no-model" not in proc.stderr and "Traceback" not in proc.stderr


def test_a_sweep_and_a_search_from_the_command_line(llama_model: Path, corpus: Path, tmp_path: Path) -> None:
    common = ["--model", str(llama_model), "--method", "id", "--calibration", str(corpus),
              "--num-samples", "8", "--seq-len", "32", "--eval", f"perplexity:{corpus}",
              "--eval-opt", "perplexity.seq_len=32", "--device", "cpu"]
    proc = pare("compress", *common, "--mac-target", "0.8,0.6", "--out", str(tmp_path / "sweep"), "--json",
                cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [p["label"] for p in result["points"]] == ["mac-0.8", "mac-0.6"]
    assert all((tmp_path / "sweep" / p["label"] / "compression.json").is_file() for p in result["points"])
    proc = pare("compress", *common, "--max-ratio", "2.0", "--metric", "perplexity", "--out",
                str(tmp_path / "search"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "step   0.95" in proc.stdout and "artifact" in proc.stdout

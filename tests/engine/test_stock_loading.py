"""Artifacts that stock transformers and sentence-transformers load without Pare.

A uniform-width artifact's config.json says the compressed widths in the architecture's own terms;
a child Python process, from which Pare's packages are made unimportable (the editable install's
finder removed, the repository off the path), loads it with `from_pretrained` (and
`SentenceTransformer` for MiniLM) and must give the outputs `load_compressed` gives (fp32, 1e-5).
Tiny random models check the rule per architecture and kind; the two real models are slow tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.factories import batches, tiny_model
from workers.compression.artifacts import load_compressed, read_manifest, save_compressed
from workers.compression.engine import CompressionSpec, compress
from workers.data import DataSource
from workers.models import MINILM_ID, SMOLLM2_ID
from workers.pipeline import PipelineConfig, run_pipeline

ATOL = 1e-5

# Run first in the child: Pare's packages become unimportable, whatever installed them.
_NO_PARE = """
import importlib.util, sys
sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")]
sys.path_hooks[:] = [h for h in sys.path_hooks if "__editable__" not in getattr(h, "__module__", "")]
sys.path_importer_cache.clear()
sys.path[:] = [p for p in sys.path if p not in ("", ".", REPO)]
for name in ("core", "workers", "app", "cli"):
    assert importlib.util.find_spec(name) is None, f"Pare's package {name!r} is importable"
"""


def run_stock(script: str, tmp_path: Path) -> None:
    """Run `script` in a child interpreter that cannot import Pare (cwd outside the repository)."""
    repo = str(Path(__file__).resolve().parents[2])
    code = (f"REPO = {repo!r}\n" + _NO_PARE + textwrap.dedent(script)
            + "\nassert 'workers' not in sys.modules\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]


def main_output(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        out = model(**batch)
    return out.logits if getattr(out, "logits", None) is not None else out.last_hidden_state


def stock_outputs(
    artifact: Path, batch: dict[str, torch.Tensor], auto_class: str, tmp_path: Path
) -> torch.Tensor:
    """`auto_class.from_pretrained(artifact)`'s main output on `batch`, computed in a Pare-free child."""
    save_file({k: v.contiguous() for k, v in batch.items()}, str(tmp_path / "batch.safetensors"))
    run_stock(f"""
        import torch, transformers
        from safetensors.torch import load_file, save_file
        model = transformers.{auto_class}.from_pretrained({str(artifact)!r}).eval()
        assert next(model.parameters()).dtype == torch.float32
        with torch.no_grad():
            out = model(**load_file("batch.safetensors"))
        main = out.logits if getattr(out, "logits", None) is not None else out.last_hidden_state
        save_file({{"out": main.contiguous()}}, "out.safetensors")
    """, tmp_path)
    return load_file(str(tmp_path / "out.safetensors"))["out"]


def _compressed(arch: str, method: str, target: float, **params: Any) -> torch.nn.Module:
    model = tiny_model(arch)
    compress(model, batches(), CompressionSpec(method, target, 16, params))
    return model


def _save(model: torch.nn.Module, out: Path, source_dir: Path | None = None) -> Path:
    report = {"method": "test"}
    return save_compressed(model, None, out, report, source={"model_id": "tiny"}, source_dir=source_dir)


@pytest.mark.parametrize("arch", ["llama", "mistral", "qwen2"])
def test_a_uniform_decoder_artifact_loads_in_stock_transformers(arch: str, tmp_path: Path) -> None:
    model = _compressed(arch, "id", 0.5, allocation="uniform")
    artifact = _save(model, tmp_path / "artifact")
    manifest = read_manifest(artifact)
    config = json.loads((artifact / "config.json").read_text())
    heads = model.model.layers[0].self_attn.o_proj.in_features // config["head_dim"]
    assert manifest["runtimes"] == ["pare", "transformers"]
    assert config["intermediate_size"] == model.model.layers[0].mlp.down_proj.in_features
    assert config["num_attention_heads"] == heads < manifest["source_config"]["num_attention_heads"]
    source = manifest["source_config"]
    assert config["head_dim"] == source["hidden_size"] // source["num_attention_heads"]  # explicit now
    batch = batches()[0]
    pare, _ = load_compressed(artifact, with_tokenizer=False)
    expected = main_output(pare, batch)
    torch.testing.assert_close(main_output(model, batch), expected, atol=ATOL, rtol=0)
    torch.testing.assert_close(stock_outputs(artifact, batch, "AutoModelForCausalLM", tmp_path), expected,
                               atol=ATOL, rtol=0)


@pytest.mark.parametrize(
    ("arch", "method", "params", "stock"),
    [
        ("bert", "id", {"allocation": "uniform", "prune_heads": False}, True),  # FFN widths only
        ("bert", "id", {"allocation": "uniform"}, False),  # BERT's head width is hidden/heads
        ("llama", "id", {"allocation": "global"}, False),  # blocks of different widths
        ("llama", "svd", {}, False),  # factorised Linears
        ("gpt2", "id", {"allocation": "uniform", "prune_heads": False}, False),  # Conv1D stored as Linear
    ],
)
def test_runtimes_say_what_loads_the_artifact(
    arch: str, method: str, params: dict[str, Any], stock: bool, tmp_path: Path
) -> None:
    model = _compressed(arch, method, 0.6, **params)
    source = tiny_model(arch).config.to_dict()
    artifact = _save(model, tmp_path / "artifact")
    manifest = read_manifest(artifact)
    assert manifest["runtimes"] == (["pare", "transformers"] if stock else ["pare"])
    assert manifest["source_config"]["model_type"] == source["model_type"]
    if not stock:  # config.json stays the source's, and Pare's loader rebuilds the shapes
        config = json.loads((artifact / "config.json").read_text())
        for key in ("intermediate_size", "num_attention_heads", "n_inner", "n_head"):
            assert config.get(key) == source.get(key)
    batch = batches()[0]
    pare, _ = load_compressed(artifact, with_tokenizer=False)
    torch.testing.assert_close(main_output(pare, batch), main_output(model, batch), atol=ATOL, rtol=0)


def test_sentence_transformers_files_are_kept(tmp_path: Path) -> None:
    source = tmp_path / "source"
    (source / "1_Pooling").mkdir(parents=True)
    (source / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "../outside", "type": "sentence_transformers.models.Normalize"},
    ]))
    (source / "1_Pooling" / "config.json").write_text('{"pooling_mode_mean_tokens": true}')
    (source / "sentence_bert_config.json").write_text('{"max_seq_length": 64}')
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text("not to be copied")
    model = _compressed("bert", "id", 0.6, allocation="uniform", prune_heads=False)
    artifact = _save(model, tmp_path / "artifact", source_dir=source)
    assert read_manifest(artifact)["runtimes"] == ["pare", "transformers", "sentence-transformers"]
    assert (artifact / "1_Pooling" / "config.json").read_text() == '{"pooling_mode_mean_tokens": true}'
    assert (artifact / "sentence_bert_config.json").is_file()
    # a module folder outside the source model is not followed
    assert not any(p.name == "secret.txt" for p in artifact.rglob("*"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["artifact", "outside", "source"]


def _pipeline(model_id: str, out: Path, data: DataSource, **overrides: Any) -> Path:
    config = PipelineConfig(model=model_id, method="id", mac_target=0.7, calibration=data, out_dir=out,
                            device="cpu", **overrides)
    result = run_pipeline(config)
    assert "transformers" in result.summary()["runtimes"]
    return out


@pytest.mark.slow
def test_minilm_uniform_id_artifact_loads_in_transformers_and_sentence_transformers(
    bundled: list[str], data_dir: Path, tmp_path: Path
) -> None:
    artifact = _pipeline(
        MINILM_ID, tmp_path / "minilm",
        DataSource(path=str(data_dir / "stsb/train.tsv"), text_column="sentence1"), num_samples=32,
        method_params={"allocation": "uniform", "prune_heads": False},
    )
    assert read_manifest(artifact)["runtimes"] == ["pare", "transformers", "sentence-transformers"]
    pare, tokenizer = load_compressed(artifact)
    sentences = ["A man is playing a guitar.", "The cat sleeps on the warm windowsill all afternoon."]
    batch = dict(tokenizer(sentences, padding=True, return_tensors="pt"))
    expected = main_output(pare, batch)
    stock = stock_outputs(artifact, batch, "AutoModel", tmp_path)
    torch.testing.assert_close(stock, expected, atol=ATOL, rtol=0)
    # sentence-transformers' pipeline (mean pooling, normalisation) from the kept files
    mask = batch["attention_mask"].unsqueeze(-1).float()
    pooled = (expected * mask).sum(1) / mask.sum(1)
    embeddings = torch.nn.functional.normalize(pooled, dim=-1)
    run_stock(f"""
        from sentence_transformers import SentenceTransformer
        from safetensors.torch import save_file
        model = SentenceTransformer({str(artifact)!r}, device="cpu")
        save_file({{"e": model.encode({sentences!r}, convert_to_tensor=True)}}, "st.safetensors")
    """, tmp_path)
    encoded = load_file(str(tmp_path / "st.safetensors"))["e"]
    torch.testing.assert_close(encoded, embeddings, atol=ATOL, rtol=0)


@pytest.mark.slow
def test_smollm2_uniform_id_artifact_loads_in_stock_transformers(
    bundled: list[str], data_dir: Path, tmp_path: Path
) -> None:
    artifact = _pipeline(
        SMOLLM2_ID, tmp_path / "smollm2", DataSource(path=str(data_dir / "wikitext-2/valid.txt")),
        num_samples=16, max_seq_length=128,
    )
    config = json.loads((artifact / "config.json").read_text())
    source = read_manifest(artifact)["source_config"]
    assert config["intermediate_size"] < source["intermediate_size"]
    pare, tokenizer = load_compressed(artifact)
    batch = dict(tokenizer(["The history of the city begins in the Roman period"], return_tensors="pt"))
    expected = main_output(pare, batch)
    torch.testing.assert_close(stock_outputs(artifact, batch, "AutoModelForCausalLM", tmp_path), expected,
                               atol=ATOL, rtol=0)


def test_widths_the_config_class_refuses_keep_the_source_config(tmp_path: Path) -> None:
    """3 of 4 heads kept: BertConfig refuses hidden 32 over 3 heads; the artifact is Pare's only."""
    model = _compressed("bert", "id", 0.8, allocation="uniform")
    assert model.encoder.layer[0].attention.self.num_attention_heads == 3
    artifact = _save(model, tmp_path / "artifact")
    assert read_manifest(artifact)["runtimes"] == ["pare"]
    assert json.loads((artifact / "config.json").read_text())["num_attention_heads"] == 4
    batch = batches()[0]
    pare, _ = load_compressed(artifact, with_tokenizer=False)
    torch.testing.assert_close(main_output(pare, batch), main_output(model, batch), atol=ATOL, rtol=0)

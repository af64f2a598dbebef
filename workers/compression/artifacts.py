"""Artifacts: a directory with model.safetensors, config.json, tokenizer files and compression.json.

compression.json holds the method and its parameters, per-layer kept heads and neurons or
ranks, MAC and parameter accounting, the source model and revision, the calibration
fingerprint, library versions, and `structure`: the kind and shape of every block Linear plus
the head-count attributes of each attention module. `load_compressed` builds the dense model
of the same transformers class from config.json, rebuilds the shapes from `structure`, then
loads the weights: no pickle, no remote code.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
import transformers
from safetensors.torch import load_model, save_model
from torch import nn

from core.errors import ModelRefused
from workers.compression.adapters import ModelAdapter, build_linear, set_module

FORMAT = "pare.compressed/1"
MANIFEST = "compression.json"
WEIGHTS = "model.safetensors"


def library_versions() -> dict[str, str]:
    import numpy
    import safetensors

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "safetensors": safetensors.__version__,
        "numpy": numpy.__version__,
    }


def save_compressed(
    model: nn.Module,
    tokenizer: Any,
    out_dir: str | Path,
    report: dict[str, Any],
    *,
    source: dict[str, Any],
    calibration: dict[str, Any] | None = None,
) -> Path:
    """Write the artifact directory atomically (a temporary sibling renamed into place)."""
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.config.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        save_model(model, str(tmp / WEIGHTS), metadata={"format": "pt", "pare_format": FORMAT})
        manifest = {
            "format": FORMAT,
            "architecture": type(model).__name__,
            "source": source,
            "calibration": calibration or {},
            "versions": library_versions(),
            **report,
            "structure": ModelAdapter(model).manifest(),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        for path in tmp.iterdir():
            _fsync(path)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _fsync(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def read_manifest(path: str | Path) -> dict[str, Any]:
    manifest = json.loads((Path(path) / MANIFEST).read_text())
    if manifest.get("format") != FORMAT:
        raise ModelRefused(f"{path}: not a Pare artifact (format {manifest.get('format')!r})")
    return manifest


def _model_class(name: str) -> type[nn.Module]:
    cls = getattr(transformers, name, None)
    if not (isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel)):
        raise ModelRefused(f"architecture {name!r} is not a transformers model class")
    return cls


def load_compressed(
    path: str | Path, *, device: str | torch.device = "cpu", with_tokenizer: bool = True
) -> tuple[nn.Module, Any]:
    """Rebuild a compressed model (and its tokenizer) from an artifact directory."""
    path = Path(path)
    manifest = read_manifest(path)
    config = transformers.AutoConfig.from_pretrained(path, trust_remote_code=False)
    if getattr(config, "auto_map", None):
        raise ModelRefused(f"{path}: config.json asks for remote code (auto_map)")
    cls = _model_class(manifest["architecture"])
    model = cls(config)
    dtype = next(model.parameters()).dtype
    structure = manifest["structure"]
    for module_path, entry in structure["modules"].items():
        set_module(model, module_path, build_linear(entry, dtype))
    for module_path, attrs in structure["attributes"].items():
        module = model.get_submodule(module_path)
        for key, value in attrs.items():
            setattr(module, key, value)
    missing, unexpected = load_model(model, str(path / WEIGHTS), strict=True)
    if missing or unexpected:
        raise ModelRefused(f"{path}: weights do not match the structure ({missing[:3]} {unexpected[:3]})")
    model.to(device).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(path) if with_tokenizer else None
    return model, tokenizer

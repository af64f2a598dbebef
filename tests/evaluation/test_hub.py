"""core.hub: id validation, offline resolution and the trust rules (no torch needed)."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from core.archs import SUPPORTED_MODEL_TYPES
from core.errors import ModelNotFound, ModelRefused, UnsupportedArchitecture
from core.hub import ResolvedModel, inspect_model, resolve_model, validate_model_id
from tests.reliability import record

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "model_id",
    ["gpt2", "sentence-transformers/all-MiniLM-L6-v2", "HuggingFaceTB/SmolLM2-135M-Instruct", "a.b_c-d/e.f"],
)
def test_valid_ids(model_id: str) -> None:
    assert validate_model_id(model_id) == model_id


@pytest.mark.parametrize(
    "model_id",
    [
        "../../etc/passwd",
        "..",
        "org/../name",
        "/abs/path",
        "/etc",
        "~/models",
        "C:\\models",
        "http://x",
        "https://huggingface.co/gpt2",
        "file:///etc/passwd",
        "org/name\x00",
        "a/b/c",
        "org/",
        "/name",
        "-leading",
        ".hidden",
        "org/name.",
        "org--name",
        "sp ace",
        "semi;colon",
        "x" * 97,
        "",
        "org\\name",
    ],
)
def test_invalid_ids_are_refused_on_the_id_field(model_id: str) -> None:
    with pytest.raises(ModelRefused) as info:
        validate_model_id(model_id)
    assert info.value.field == "model.id"
    record("model id as a path or URL",
           test="tests/evaluation/test_hub.py::test_invalid_ids_are_refused_on_the_id_field",
           model_id=ascii(model_id)[:24], refused=int(info.value.code == "model_refused"),
           field=info.value.field)


def test_hub_module_and_data_module_import_without_torch() -> None:
    code = "import sys, core.hub, workers.data; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def _model_folder(
    path: Path, config: dict[str, object], weights: tuple[str, ...] = ("model.safetensors",)
) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config))
    for name in weights:
        (path / name).write_bytes(b"\0" * 8)
    return path


def test_local_directory_resolves_with_config_sha(tmp_path: Path) -> None:
    folder = _model_folder(
        tmp_path / "m", {"model_type": "bert", "architectures": ["BertModel"], "num_hidden_layers": 3}
    )
    resolved = resolve_model(str(folder))
    assert resolved.revision == "local" and resolved.path == folder.resolve()
    assert len(resolved.config_sha256) == 64
    info = inspect_model(resolved)
    assert (info.model_type, info.architectures, info.num_layers, info.weight_files) == (
        "bert",
        ["BertModel"],
        3,
        ["model.safetensors"],
    )


def test_missing_hub_id_mentions_import_bundled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    with pytest.raises(ModelNotFound, match="pare models import-bundled"):
        resolve_model("org/not-cached")


def test_missing_directory_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match="no such model directory"):
        resolve_model(str(tmp_path / "nope"))


def test_auto_map_is_refused(tmp_path: Path) -> None:
    folder = _model_folder(
        tmp_path / "m", {"model_type": "llama", "auto_map": {"AutoModel": "modeling.MyModel"}}
    )
    with pytest.raises(ModelRefused, match="custom code") as in_config:
        inspect_model(resolve_model(str(folder)))
    other = _model_folder(tmp_path / "t", {"model_type": "llama"})
    (other / "tokenizer_config.json").write_text(json.dumps({"auto_map": {"AutoTokenizer": ["tok.T", None]}}))
    with pytest.raises(ModelRefused, match="custom code") as in_tokenizer:
        inspect_model(resolve_model(str(other)))
    refusals = [in_config.value, in_tokenizer.value]
    record("custom code in a model repo", test="tests/evaluation/test_hub.py::test_auto_map_is_refused",
           cases=len(refusals), refused=sum(e.code == "model_refused" for e in refusals),
           modules_imported=sum(name in sys.modules for name in ("modeling", "tok")))


def test_unsupported_model_type_lists_the_supported_ones(tmp_path: Path) -> None:
    folder = _model_folder(tmp_path / "m", {"model_type": "t5"})
    with pytest.raises(UnsupportedArchitecture) as info:
        inspect_model(resolve_model(str(folder)))
    assert all(t in str(info.value) for t in SUPPORTED_MODEL_TYPES)


def test_folder_without_weights_or_config(tmp_path: Path) -> None:
    folder = _model_folder(tmp_path / "m", {"model_type": "bert"}, weights=())
    with pytest.raises(ModelRefused, match="no weight files"):
        inspect_model(resolve_model(str(folder)))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelRefused, match="no config.json"):
        inspect_model(ResolvedModel(tmp_path / "empty", "x", "local", ""))


class _Payload:
    """Unpickling this touches `path`: proof that a pickle was opened."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return (Path.touch, (self.path,))


def test_pickle_only_weights_are_refused_without_opening_them(tmp_path: Path) -> None:
    sentinel = tmp_path / "pickle-was-opened"
    folder = _model_folder(tmp_path / "m", {"model_type": "bert", "architectures": ["BertModel"]}, weights=())
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(_Payload(sentinel)))
    with pytest.raises(ModelRefused, match="only pickle weights") as inspected:
        inspect_model(resolve_model(str(folder)))
    from workers.models import load_model

    with pytest.raises(ModelRefused) as loaded:
        load_model(str(folder))
    assert not sentinel.exists()
    found = int(sentinel.exists())
    pickle.loads((folder / "pytorch_model.bin").read_bytes())  # the payload is live: this test can fail
    assert sentinel.exists()
    refusals = [inspected.value, loaded.value]
    record("pickle weights (`.bin`)",
           test="tests/evaluation/test_hub.py::test_pickle_only_weights_are_refused_without_opening_them",
           loaders_tried=len(refusals), refused=sum(e.code == "model_refused" for e in refusals),
           sentinel_files_found=found, payload_live=int(sentinel.exists()))

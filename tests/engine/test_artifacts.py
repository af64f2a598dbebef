"""The artifact loader trusts nothing it reads: the format version, the class, every module path,
attribute name and size in compression.json are checked against the architecture's ArchSpec
before anything is set, and the model is built on the meta device and filled by assignment from
the weights file (no random dense copy). The round trip itself, for every architecture and
method, is in test_contract.py."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers
from torch import nn

from core.errors import InvalidArtifact, PareError
from tests.factories import MODEL_CLASSES, batches, tiny_config, tiny_model
from workers.compression import artifacts
from workers.compression.artifacts import load_compressed, save_compressed
from workers.compression.engine import CompressionSpec, compress

L = 16
LAYER = "model.layers.0"
Edit = Callable[[dict[str, Any]], None]


def compressed(model: nn.Module, out: Path, method: str = "id") -> Path:
    report = compress(model, batches(n=2, bs=4, seq=L), CompressionSpec(method, 0.5, L))
    return save_compressed(model, None, out, report, source={"model_id": "tiny"})


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama (grouped-query attention, 2 blocks) compressed by `id` to half its MACs."""
    return compressed(tiny_model("llama"), tmp_path_factory.mktemp("saved") / "artifact")


def edited(saved: Path, tmp_path: Path, edit: Edit) -> Path:
    """A copy of the artifact with compression.json changed by `edit`."""
    out = Path(shutil.copytree(saved, tmp_path / "edited"))
    manifest = json.loads((out / "compression.json").read_text())
    edit(manifest)
    (out / "compression.json").write_text(json.dumps(manifest))
    return out


def refused(path: Path, match: str) -> InvalidArtifact:
    with pytest.raises(InvalidArtifact, match=match) as info:
        load_compressed(path, with_tokenizer=False)
    assert isinstance(info.value, PareError) and info.value.code == "invalid_artifact"
    return info.value


def attrs(manifest: dict[str, Any]) -> dict[str, Any]:
    return manifest["structure"]["attributes"]


def modules(manifest: dict[str, Any]) -> dict[str, Any]:
    return manifest["structure"]["modules"]


def test_the_unedited_artifact_loads(saved: Path) -> None:
    model, _ = load_compressed(saved, with_tokenizer=False)
    assert type(model).__name__ == "LlamaForCausalLM"


# ----- the format version ----------------------------------------------------------------------
@pytest.mark.parametrize(("version", "match"), [
    ("pare.compressed/2", "records format 'pare.compressed/2'"),
    (None, "records no format version"),
    (1, "records format 1"),
])
def test_a_format_version_other_than_this_one_is_refused(saved: Path, tmp_path: Path, version: Any,
                                                         match: str) -> None:
    def edit(m: dict[str, Any]) -> None:
        m.pop("format")
        if version is not None:
            m["format"] = version

    refused(edited(saved, tmp_path, edit), match)


def test_a_directory_without_a_manifest_is_not_an_artifact(saved: Path, tmp_path: Path) -> None:
    out = Path(shutil.copytree(saved, tmp_path / "bare"))
    (out / "compression.json").unlink()
    refused(out, "no compression.json")


# ----- attributes ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["__class__", "training", "forward", "num_heads", "head_dim"])
def test_an_attribute_the_spec_does_not_set_is_refused_by_name(saved: Path, tmp_path: Path,
                                                               name: str) -> None:
    """Llama's spec sets num_key_value_groups only; anything else (a dunder, nn.Module state, a
    method, another family's head count) is named in the error and never set."""
    out = edited(saved, tmp_path, lambda m: attrs(m)[f"{LAYER}.self_attn"].update({name: 2}))
    refused(out, f"unexpected attribute '{name}' on {LAYER}.self_attn .allowed: num_key_value_groups")


@pytest.mark.parametrize("path", [
    "lm_head", "model.norm", f"{LAYER}.mlp", "model.layers.2.self_attn", "model.layers.-1.self_attn",
    "model.layers.00.self_attn",
])
def test_an_attribute_path_outside_the_attention_modules_is_refused(saved: Path, tmp_path: Path,
                                                                     path: str) -> None:
    out = edited(saved, tmp_path, lambda m: attrs(m).update({path: {"num_key_value_groups": 2}}))
    refused(out, f"unexpected attributes path '{path}'")


@pytest.mark.parametrize("value", [0, -1, "2", 2.0, True, None])
def test_an_attribute_value_must_be_a_positive_integer(saved: Path, tmp_path: Path, value: Any) -> None:
    out = edited(saved, tmp_path, lambda m: attrs(m)[f"{LAYER}.self_attn"].update(num_key_value_groups=value))
    refused(out, "must be a positive integer")


def test_an_attribute_value_must_agree_with_the_module_shapes(saved: Path, tmp_path: Path) -> None:
    def edit(m: dict[str, Any]) -> None:
        attrs(m)[f"{LAYER}.self_attn"]["num_key_value_groups"] += 1

    refused(edited(saved, tmp_path, edit), "block 0: attributes .* disagree with the module shapes")


# ----- modules ---------------------------------------------------------------------------------
@pytest.mark.parametrize("path", [
    "lm_head", "model.embed_tokens", f"{LAYER}.self_attn", f"{LAYER}.self_attn.rotary",
    "model.layers.2.mlp.up_proj",
])
def test_a_module_path_that_is_not_a_block_linear_is_refused(saved: Path, tmp_path: Path, path: str) -> None:
    def edit(m: dict[str, Any]) -> None:
        modules(m)[path] = dict(modules(m)[f"{LAYER}.mlp.up_proj"])

    refused(edited(saved, tmp_path, edit), f"unexpected modules path '{path}'")


def test_a_missing_block_linear_is_refused(saved: Path, tmp_path: Path) -> None:
    refused(edited(saved, tmp_path, lambda m: modules(m).pop(f"{LAYER}.mlp.up_proj")),
            f"structure.modules lacks '{LAYER}.mlp.up_proj'")


@pytest.mark.parametrize("kind", ["conv1d", "Linear", "", None, 3])
def test_an_unknown_module_type_is_refused(saved: Path, tmp_path: Path, kind: Any) -> None:
    out = edited(saved, tmp_path, lambda m: modules(m)[f"{LAYER}.mlp.up_proj"].update(type=kind))
    refused(out, f"module {LAYER}.mlp.up_proj has unknown type .* .known: linear, lowrank")


@pytest.mark.parametrize(("change", "match"), [
    ({"in": 0}, "in of .* must be a positive integer"),
    ({"out": -4}, "out of .* must be a positive integer"),
    ({"in": True}, "in of .* must be a positive integer"),
    ({"out": "64"}, "out of .* must be a positive integer"),
    ({"bias": 1}, "bias of .* must be true or false"),
    ({"rank": 4}, "a linear entry .* has the keys"),
    ({"type": "lowrank"}, "a lowrank entry .* has the keys"),
])
def test_module_entries_have_the_keys_and_sizes_of_their_kind(saved: Path, tmp_path: Path,
                                                              change: dict[str, Any], match: str) -> None:
    out = edited(saved, tmp_path, lambda m: modules(m)[f"{LAYER}.mlp.up_proj"].update(change))
    refused(out, match)


def test_module_sizes_must_make_one_consistent_block(saved: Path, tmp_path: Path) -> None:
    """down_proj one column wider than up_proj's rows: no block of any shape has that."""
    out = edited(saved, tmp_path, lambda m: modules(m)[f"{LAYER}.mlp.up_proj"].update(
        out=modules(m)[f"{LAYER}.mlp.up_proj"]["out"] + 1))
    refused(out, "block 0: mlp.up_proj is .*, a block of")


# ----- the weights ----------------------------------------------------------------------------
@pytest.mark.parametrize("change", ["drop", "extra", "reshape"])
def test_weights_that_do_not_fit_the_structure_are_refused(saved: Path, tmp_path: Path, change: str) -> None:
    """A tensor missing from model.safetensors, one the model does not have, or one of another
    shape than the manifest's module: refused, never left uninitialised or silently resized."""
    from safetensors.torch import load_file, save_file

    out = Path(shutil.copytree(saved, tmp_path / "weights"))
    state = load_file(str(out / "model.safetensors"))
    name = f"{LAYER}.mlp.up_proj.weight"
    if change == "drop":
        del state[name]
    elif change == "extra":
        state["model.layers.0.mlp.extra"] = torch.zeros(2)
    else:
        state[name] = torch.zeros(state[name].shape[0] + 1, state[name].shape[1])
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    refused(out, "model.safetensors does not match the structure")


# ----- the class ------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "match"), [
    ("BertModel", "is a model of type 'bert', config.json is 'llama'"),
    ("AutoModelForCausalLM", "is not a transformers model class"),
    ("PreTrainedModel", "is a model of type None"),
    ("__class__", "is not a transformers model class"),
    ("os.path", "is not a transformers model class"),
    (["LlamaForCausalLM"], "is not a transformers model class"),
])
def test_the_class_must_be_a_transformers_model_of_the_configs_type(saved: Path, tmp_path: Path, name: Any,
                                                                    match: str) -> None:
    refused(edited(saved, tmp_path, lambda m: m.update(architecture=name)), match)


# ----- memory and ties ------------------------------------------------------------------------
def test_the_loader_never_allocates_a_dense_model(saved: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every Parameter registered before the weights file is read lives on the meta device, and
    every Parameter of the loaded model is a tensor read from the file (same storage): nothing was
    allocated, randomly initialised and then overwritten."""
    registered: list[tuple[bool, torch.Tensor]] = []
    file_storages: set[int] = set()
    read = [False]
    register, load_file = nn.Module.register_parameter, artifacts.load_file

    def spy_register(self: nn.Module, name: str, param: nn.Parameter | None) -> None:
        if param is not None:
            registered.append((read[0], param))
        register(self, name, param)

    def spy_load(*args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        read[0] = True
        state = load_file(*args, **kwargs)
        file_storages.update(t.untyped_storage().data_ptr() for t in state.values())
        return state

    monkeypatch.setattr(nn.Module, "register_parameter", spy_register)
    monkeypatch.setattr(artifacts, "load_file", spy_load)
    model, _ = load_compressed(saved, with_tokenizer=False)
    before = [p for after, p in registered if not after]
    assert len(before) >= len(list(model.parameters())) and all(p.is_meta for p in before)
    for name, param in model.named_parameters():
        assert param.untyped_storage().data_ptr() in file_storages, name


def test_tied_embeddings_stay_tied(tmp_path: Path) -> None:
    """A causal model whose LM head is its input embedding (SmolLM2's layout) reloads with one
    Parameter for both, and generates what the in-memory model generates."""
    config = tiny_config("llama")
    config.tie_word_embeddings = True
    config.architectures = [MODEL_CLASSES["llama"]]
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).eval()
    assert model.lm_head.weight is model.model.embed_tokens.weight
    loaded, _ = load_compressed(compressed(model, tmp_path / "tied"), with_tokenizer=False)
    assert loaded.lm_head.weight is loaded.model.embed_tokens.weight
    ids = batches(n=1, bs=2, seq=6, seed=3)[0]["input_ids"]
    kwargs = dict(attention_mask=torch.ones_like(ids), max_new_tokens=4, do_sample=False)
    torch.testing.assert_close(loaded.generate(ids, **kwargs), model.generate(ids, **kwargs), atol=0, rtol=0)


@pytest.mark.parametrize(("entry", "kind"), [
    ({"type": "monarch", "blocks": 3, "rank": 1}, "monarch"),
    ({"type": "block_lowrank", "grid": [2, 2], "ranks": [[1, 1]]}, "block_lowrank"),
    ({"type": "mpo", "out_factors": [2, 2], "in_factors": [4, 8], "bonds": [2], "order": "left"}, "mpo"),
])
def test_a_factorised_entry_whose_factor_shapes_do_not_fit_is_refused(
    saved: Path, tmp_path: Path, entry: dict[str, Any], kind: str
) -> None:
    """The loader validates every kind's factor shapes (core.kinds) before building anything."""
    def edit(m: dict[str, Any]) -> None:
        old = modules(m)[f"{LAYER}.mlp.up_proj"]
        modules(m)[f"{LAYER}.mlp.up_proj"] = {
            "out": old["out"], "in": old["in"], "bias": old["bias"], **entry
        }

    refused(edited(saved, tmp_path, edit), f"module {LAYER}.mlp.up_proj: invalid {kind} entry")

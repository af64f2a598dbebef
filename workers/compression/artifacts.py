"""Artifacts: a directory with model.safetensors, config.json, tokenizer files and compression.json.

config.json describes the compressed shapes in the architecture's own terms when stock transformers
can express them (`stock_config`: every block Linear dense and every block of the same widths, the
`uniform` allocation), so `AutoModel*.from_pretrained(dir)` loads the artifact without Pare; otherwise
it is the source model's. The source config is always in compression.json (`source_config`), and
`runtimes` there says what loads the artifact: `pare` always, `transformers` for a stock config,
`sentence-transformers` when the source's sentence-transformers files (modules.json, pooling and
normalisation) were kept beside a stock config, and the formats exported later (`onnx`, `gguf`).

compression.json holds the method and its parameters, per-layer kept heads and neurons or
factor kinds, MAC and parameter accounting, the source model and revision, the calibration
fingerprint, library versions, and `structure`: the kind and shape of every block Linear plus
the head-count attributes of each attention module.

`load_compressed` trusts nothing it reads: the format version must be this one; the class must
be a transformers model class of config.json's model_type; every module path in `structure`
must be a block Linear of that architecture's `ArchSpec` (`<layers>.<i>.<linear>`, i below the
number of layers), of a known Linear kind whose factor shapes validate (`core.kinds`), and
every attribute a head count the spec sets, equal to what the shapes imply (`InvalidArtifact`
otherwise). config.json's shapes are checked (`core.macs.Geometry`) and its layer count bounded
by the manifest's before the model is built, and every tensor of the weights file must have the
model's kind of dtype, one floating dtype throughout. The model is built
on the meta device, so no random dense copy is ever allocated; the weights are then assigned
straight from model.safetensors (no pickle, no remote code), tied weights re-tied, and the
non-persistent buffers (rotary frequencies, position ids) rebuilt by the model's own initialiser.
A weights file that is not readable safetensors is `ModelCorrupt` (`model_corrupt`); unreadable
config or tokenizer files are `InvalidArtifact`. Fuzzed by tests/fuzz/test_artifact_loader.py.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, cast

import torch
import transformers
from huggingface_hub.errors import StrictDataclassError
from safetensors import SafetensorError
from safetensors.torch import load_file, save_model
from torch import nn

from core.errors import InvalidArtifact, ModelCorrupt, ModelRefused, UnsupportedArchitecture
from core.kinds import from_entry
from core.macs import HEADS_KEYS, INTERMEDIATE_KEYS, Geometry, linear_shapes
from workers.compression.adapters import MODULE_KINDS, ModelAdapter, build_linear, linear_dims, set_module

FORMAT = "pare.compressed/1"
MANIFEST = "compression.json"
WEIGHTS = "model.safetensors"
# what a transformers model class raises when it cannot build a config's values
_BUILD_ERRORS = (ValueError, TypeError, KeyError, IndexError, ArithmeticError, RuntimeError, AssertionError,
                 StrictDataclassError)
# sentence-transformers' own files beside a model's; the module folders modules.json names travel too
SENTENCE_TRANSFORMERS_FILES = (
    "modules.json", "sentence_bert_config.json", "config_sentence_transformers.json",
)


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
    source_dir: str | Path | None = None,
) -> Path:
    """Write the artifact directory atomically (a temporary sibling renamed into place).
    `source_dir`: the source model's folder, whose sentence-transformers files are kept."""
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        source_config = cast(Any, model).config
        stock = stock_config(model)
        (stock or source_config).save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        kept_st = copy_sentence_transformers_files(Path(source_dir), tmp) if source_dir else False
        save_model(model, str(tmp / WEIGHTS), metadata={"format": "pt", "pare_format": FORMAT})
        runtimes = ["pare"] + (["transformers"] if stock else []) + (
            ["sentence-transformers"] if stock and kept_st else []
        )
        manifest = {
            "format": FORMAT,
            "architecture": type(model).__name__,
            "source": source,
            "calibration": calibration or {},
            "versions": library_versions(),
            **report,
            "structure": ModelAdapter(model).manifest(),
            "source_config": source_config.to_dict(),
            "runtimes": runtimes,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
        for path in tmp.iterdir():
            if path.is_file():
                _fsync(path)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def stock_config(model: nn.Module) -> transformers.PretrainedConfig | None:
    """The config that makes stock transformers build exactly `model`'s shapes, or None when it
    cannot say them: a factorised Linear, blocks of different widths, or pruned heads in an
    architecture whose head width follows from hidden/heads (BERT, GPT-2, OPT, DistilBERT;
    transformers 5 dropped `pruned_heads`). Checked, not assumed: the class is built from the
    candidate config on the meta device and every weight's shape must equal the model's."""
    adapter = ModelAdapter(model)
    if any(entry["type"] != "linear" for entry in adapter.manifest()["modules"].values()):
        return None
    shapes = [adapter.block_shape(layer) for layer in adapter.layers]
    if len({(s.heads, s.kv_heads, s.neurons) for s in shapes}) != 1:
        return None
    shape = shapes[0]
    config = cast(Any, model).config
    values = config.to_dict()
    geometry = adapter.geometry
    values[next(k for k in INTERMEDIATE_KEYS if k in values)] = shape.neurons
    if (shape.heads, shape.kv_heads) != (geometry.heads, geometry.kv_heads):
        values[next(k for k in HEADS_KEYS if k in values)] = shape.heads
        if "num_key_value_heads" in values:
            values["num_key_value_heads"] = shape.kv_heads
        values["head_dim"] = geometry.head_dim
    values["dtype"] = str(next(model.parameters()).dtype).removeprefix("torch.")
    try:
        candidate = type(config).from_dict(values)
        with torch.device("meta"):
            built = type(model)(candidate)
    except _BUILD_ERRORS:  # the class refuses these widths (BERT: hidden % heads)
        return None
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in built.state_dict().items()}
    return candidate if want == got else None


def copy_sentence_transformers_files(source: Path, dest: Path) -> bool:
    """Copy sentence-transformers' files (and the module folders modules.json lists, e.g. 1_Pooling,
    2_Normalize) from a source model folder; False when the source is not a sentence-transformers
    model. The Transformer module itself (path "") is the artifact's own weights and config."""
    modules_file = source / "modules.json"
    if not modules_file.is_file():
        return False
    try:
        modules = json.loads(modules_file.read_text(encoding="utf-8"))
        folders = [str(m["path"]) for m in modules if isinstance(m, dict) and m.get("path")]
    except (OSError, ValueError, TypeError, KeyError):
        return False
    for name in SENTENCE_TRANSFORMERS_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, dest / name)
    for folder in folders:
        src = (source / folder).resolve()
        if src.is_dir() and src.is_relative_to(source.resolve()) and not (dest / folder).exists():
            shutil.copytree(src, dest / folder)
    return True


def _fsync(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def read_manifest(path: str | Path) -> dict[str, Any]:
    """compression.json as a dict; InvalidArtifact unless it is a JSON object of format `FORMAT`."""
    file = Path(path) / MANIFEST
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidArtifact(f"{path}: no {MANIFEST}, not a Pare artifact") from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:  # RecursionError: nesting
        raise InvalidArtifact(f"{path}: {MANIFEST} is not readable JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise InvalidArtifact(f"{path}: {MANIFEST} is not a JSON object")
    version = manifest.get("format")
    if version != FORMAT:
        found = "records no format version" if version is None else f"records format {version!r}"
        raise InvalidArtifact(f"{path}: {MANIFEST} {found}; this loader reads {FORMAT!r} only")
    return manifest


def load_compressed(
    path: str | Path, *, device: str | torch.device = "cpu", with_tokenizer: bool = True
) -> tuple[nn.Module, Any]:
    """Rebuild a compressed model (and its tokenizer) from an artifact directory."""
    path = Path(path)
    manifest = read_manifest(path)
    config = _read_config(path)
    cls = _model_class(manifest.get("architecture"), config)
    _check_geometry(path, config, manifest.get("structure"))
    with torch.device("meta"):  # shapes only: the weights arrive from the file, by assignment
        model = _build_model(path, cls, config)
        adapter = _adapter(model)
        modules, attributes = _checked_structure(manifest.get("structure"), adapter)
        dtype = next(model.parameters()).dtype
        for module_path, entry in modules.items():
            set_module(model, module_path, _build_linear(module_path, entry, dtype))
    for i, layer in enumerate(adapter.layers):
        _set_head_counts(adapter, i, layer, attributes[f"{adapter.layer_path(i)}.{adapter.spec.attention}"])
    _assign_weights(model, _read_weights(path / WEIGHTS))
    _rebuild_non_persistent_buffers(model)
    unset = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if unset:
        raise InvalidArtifact(f"{path}: nothing in {WEIGHTS} for {unset[:3]}")
    model.to(device).eval()
    return model, _read_tokenizer(path) if with_tokenizer else None


def _read_config(path: Path) -> transformers.PretrainedConfig:
    """config.json as a transformers config; InvalidArtifact when transformers cannot read it (not
    JSON, no or an unknown model_type, a field of the wrong type or value)."""
    try:
        config: transformers.PretrainedConfig = transformers.AutoConfig.from_pretrained(
            path, trust_remote_code=False
        )
    except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError, ArithmeticError,
            StrictDataclassError) as exc:  # what transformers' config classes raise on hostile values
        raise InvalidArtifact(f"{path}: config.json is not a readable model config ({exc})") from exc
    if getattr(config, "auto_map", None):
        raise ModelRefused(f"{path}: config.json asks for remote code (auto_map)")
    return config


def _check_geometry(path: Path, config: transformers.PretrainedConfig, structure: Any) -> None:
    """Before anything is built: the config's shapes must be positive and consistent
    (`Geometry.from_config`), and each of its layers must have its attributes entry in the
    manifest, so that a config.json naming a billion layers is refused, not built (stray entries
    are named by `_checked_structure`)."""
    try:
        geometry = Geometry.from_config(config.to_dict())
    except ModelRefused as exc:
        raise InvalidArtifact(f"{path}: config.json: {exc}") from exc
    attributes = structure.get("attributes") if isinstance(structure, dict) else None
    if not isinstance(attributes, dict) or len(attributes) < geometry.num_layers:
        raise InvalidArtifact(
            f"{MANIFEST}: structure.attributes must hold one entry for each of the "
            f"{geometry.num_layers} layers of config.json"
        )


def _build_model(path: Path, cls: type[transformers.PreTrainedModel],
                 config: transformers.PretrainedConfig) -> nn.Module:
    """`cls(config)`: InvalidArtifact for a config whose values the class cannot build (an unknown
    activation or rope type, sizes torch refuses, a pad token outside the vocabulary: nn.Embedding
    asserts that one)."""
    try:
        return cls(config)
    except _BUILD_ERRORS as exc:
        raise InvalidArtifact(
            f"{path}: config.json does not build a {cls.__name__} ({type(exc).__name__}: {exc})"
        ) from exc


def _adapter(model: nn.Module) -> ModelAdapter:
    """The model's adapter, provided the class has the spec's block list (a family's abstract
    `...PreTrainedModel` base class has none)."""
    adapter = ModelAdapter(model)
    try:
        model.get_submodule(adapter.layers_path)
    except AttributeError as exc:
        raise InvalidArtifact(
            f"architecture {type(model).__name__!r} has no block list {adapter.layers_path!r}"
        ) from exc
    return adapter


def _build_linear(module_path: str, entry: dict[str, Any], dtype: torch.dtype) -> nn.Module:
    try:
        return build_linear(entry, dtype)
    except (RuntimeError, TypeError, OverflowError) as exc:  # sizes past torch's int64 arithmetic
        raise InvalidArtifact(f"{MANIFEST}: module {module_path}: sizes torch cannot build ({exc})") from exc


def _read_tokenizer(path: Path) -> Any:
    """The artifact's tokenizer; InvalidArtifact when its files do not load."""
    try:
        return transformers.AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    except Exception as exc:  # noqa: BLE001 - a deliberate boundary: the tokenizer parsers raise
        # JSONDecodeError, KeyError, TypeError, AttributeError, UnicodeDecodeError and tokenizers'
        # bare Exception on hostile files; the original stays chained
        raise InvalidArtifact(f"{path}: the tokenizer does not load ({type(exc).__name__}: {exc})") from exc


def _model_class(name: Any, config: transformers.PretrainedConfig) -> type[transformers.PreTrainedModel]:
    """The transformers model class `name`, provided it is one for config.json's model_type."""
    public = isinstance(name, str) and name.isidentifier() and not name.startswith("_")
    cls = getattr(transformers, name, None) if public else None
    if not (isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel)):
        raise InvalidArtifact(f"architecture {name!r} is not a transformers model class")
    model_type = getattr(cls.config_class, "model_type", None)
    if model_type != config.model_type:
        raise InvalidArtifact(
            f"architecture {name!r} is a model of type {model_type!r}, config.json is {config.model_type!r}"
        )
    return cls


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _exact_keys(what: str, table: Any, expected: set[str], rule: str) -> dict[str, Any]:
    """`table` as a dict whose keys are exactly `expected`; InvalidArtifact naming the first stray."""
    if not isinstance(table, dict):
        raise InvalidArtifact(f"{MANIFEST}: structure.{what} is not an object")
    unexpected, missing = sorted(set(table) - expected), sorted(expected - set(table))
    if unexpected:
        raise InvalidArtifact(f"{MANIFEST}: unexpected {what} path {unexpected[0]!r} ({rule})")
    if missing:
        raise InvalidArtifact(f"{MANIFEST}: structure.{what} lacks {missing[0]!r}")
    return table


def _checked_structure(
    structure: Any, adapter: ModelAdapter
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, int]]]:
    """(modules, attributes) of `structure`, each path and name whitelisted by the ArchSpec."""
    if not isinstance(structure, dict) or set(structure) != {"modules", "attributes"}:
        raise InvalidArtifact(f"{MANIFEST}: structure must hold exactly 'modules' and 'attributes'")
    spec, n = adapter.spec, len(adapter.layers)
    layers = f"{adapter.layers_path}.<i> for i < {n}"
    linears = {f"{adapter.layer_path(i)}.{rel}" for i in range(n) for rel in spec.linears.values()}
    modules = _exact_keys("modules", structure["modules"], linears,
                          f"block Linears are {layers} . {sorted(spec.linears.values())}")
    for module_path, entry in modules.items():
        _check_module_entry(module_path, entry)
    attention = {f"{adapter.layer_path(i)}.{spec.attention}" for i in range(n)}
    attributes = _exact_keys("attributes", structure["attributes"], attention,
                             f"head counts live on {layers} . {spec.attention}")
    allowed = sorted(spec.head_attr_names)
    for module_path, attrs in attributes.items():
        if not isinstance(attrs, dict):
            raise InvalidArtifact(f"{MANIFEST}: attributes of {module_path} are not an object")
        for key, value in attrs.items():
            if key not in spec.head_attr_names:
                raise InvalidArtifact(
                    f"{MANIFEST}: unexpected attribute {key!r} on {module_path} "
                    f"(allowed: {', '.join(allowed)})"
                )
            if not _positive_int(value):
                raise InvalidArtifact(
                    f"{MANIFEST}: attribute {key} of {module_path} must be a positive integer"
                )
    return modules, attributes


def _check_module_entry(module_path: str, entry: Any) -> None:
    kind = entry.get("type") if isinstance(entry, dict) else None
    if not isinstance(kind, str) or kind not in MODULE_KINDS:
        raise InvalidArtifact(
            f"{MANIFEST}: module {module_path} has unknown type {kind!r} (known: {', '.join(MODULE_KINDS)})"
        )
    keys = MODULE_KINDS[kind]
    if set(entry) - {"type"} != keys:
        raise InvalidArtifact(f"{MANIFEST}: a {kind} entry ({module_path}) has the keys {sorted(keys)}")
    if not isinstance(entry["bias"], bool):
        raise InvalidArtifact(f"{MANIFEST}: bias of {module_path} must be true or false")
    for key in ("in", "out"):
        if not _positive_int(entry[key]):
            raise InvalidArtifact(f"{MANIFEST}: {key} of {module_path} must be a positive integer")
    from_entry(entry, where=f"{MANIFEST}: module {module_path}")  # the factor shapes, validated


def _set_head_counts(adapter: ModelAdapter, index: int, layer: nn.Module, recorded: dict[str, int]) -> None:
    """Set the attention module's head counts from the spec, for the shape the rebuilt Linears
    imply; the manifest's record must agree with both."""
    where = f"{MANIFEST}: block {index}"
    try:
        shape = adapter.block_shape(layer)
    except ValueError as exc:
        raise InvalidArtifact(f"{where}: {exc}") from None
    if shape.heads < 1 or shape.kv_heads < 1 or shape.heads % shape.kv_heads:
        raise InvalidArtifact(f"{where}: {shape.heads} query heads over {shape.kv_heads} kv heads")
    expected = linear_shapes(adapter.geometry, shape)
    for name, rel in adapter.spec.linears.items():
        out_f, in_f = linear_dims(adapter.linear(layer, name))
        if (out_f, in_f) != expected[name]:
            raise InvalidArtifact(
                f"{where}: {rel} is {out_f}×{in_f}, a block of {shape.heads} heads, {shape.kv_heads} kv "
                f"heads and {shape.neurons} neurons has {expected[name][0]}×{expected[name][1]}"
            )
    attrs = adapter.spec.head_attrs(shape.heads, shape.kv_heads, adapter.geometry.head_dim)
    if recorded != attrs:
        raise InvalidArtifact(f"{where}: attributes {recorded} disagree with the module shapes ({attrs})")
    adapter.set_heads(layer, shape.heads, shape.kv_heads)


def _read_weights(file: Path) -> dict[str, torch.Tensor]:
    if not file.is_file():
        raise InvalidArtifact(f"{file.parent}: no {WEIGHTS}")
    try:
        return load_file(str(file))
    except (OSError, SafetensorError) as exc:
        raise ModelCorrupt(f"{file}: not readable safetensors ({exc})") from None


def _tied_groups(model: nn.Module) -> list[list[str]]:
    """Names that share one Parameter (an LM head tied to the input embeddings), as the class built them."""
    groups: dict[int, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        groups.setdefault(id(param), []).append(name)
    return [names for names in groups.values() if len(names) > 1]


def _check_dtypes(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """One floating dtype for the whole file, and each tensor floating where the model's is (other
    dtypes exactly the model's): assignment keeps the file's dtypes, so a file mixing float16 into
    float32 would load and then fail in the first matmul."""
    expected = model.state_dict()
    floating = sorted({str(t.dtype) for t in state.values() if t.is_floating_point()})
    if len(floating) > 1:
        raise InvalidArtifact(f"{WEIGHTS} mixes floating dtypes ({', '.join(floating)}); a model has one")
    wrong = [name for name, t in state.items() if name in expected and (
        t.is_floating_point() != expected[name].is_floating_point()
        or not t.is_floating_point() and t.dtype != expected[name].dtype)]
    if wrong:
        raise InvalidArtifact(f"{WEIGHTS}: {wrong[:3]} are not of the dtype the model has there")


def _assign_weights(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Assign the file's tensors to the meta model (no copy); a tied name the file left out (safetensors
    stores shared tensors once) takes its partner's tensor, and ties are restored afterwards."""
    _check_dtypes(model, state)
    tied = _tied_groups(model)
    for names in tied:
        present = [name for name in names if name in state]
        if any(not torch.equal(state[present[0]], state[name]) for name in present[1:]):
            raise InvalidArtifact(f"{WEIGHTS}: {present} are tied in this architecture but differ")
        for name in names if present else ():
            state.setdefault(name, state[present[0]])
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise InvalidArtifact(f"{WEIGHTS} does not match the structure (missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]})")
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        raise InvalidArtifact(f"{WEIGHTS} does not match the structure: {exc}") from None
    for names in tied:
        shared = model.get_parameter(names[0])
        for name in names[1:]:
            parent, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent), attr, shared)


def _rebuild_non_persistent_buffers(model: nn.Module) -> None:
    """Non-persistent buffers (rotary inv_freq, position ids) are not in the weights file, and on
    the meta device they hold no values. Give each storage filled with a sentinel and let the
    model's own `_init_weights` fill it, as transformers' from_pretrained does (transformers 5
    initialises every such buffer there), with every loaded tensor flagged `_is_hf_initialized`
    so that the initialiser leaves it alone. A buffer still holding the sentinel is an error."""
    loaded = {id(t): t for t in [*model.parameters(), *model.buffers()] if not t.is_meta}.values()
    owners = []
    for module_path, module in model.named_modules():
        for name in sorted(module._non_persistent_buffers_set):
            buffer = module._buffers.get(name)
            if buffer is not None and buffer.is_meta:
                module._buffers[name] = _sentinel_like(buffer)
                owners.append((module_path, module, name))
    if not owners:
        return
    for tensor in loaded:
        tensor._is_hf_initialized = True  # type: ignore[attr-defined]
    try:
        with torch.no_grad():
            for module_path, module, _ in owners:
                _initialiser(model, module_path)(module)
    finally:
        for tensor in loaded:
            del tensor._is_hf_initialized  # type: ignore[attr-defined]
    for module_path, module, name in owners:
        if _holds_sentinel(module._buffers[name]):
            raise UnsupportedArchitecture(
                f"{type(model).__name__}: cannot rebuild the buffer {module_path}.{name} "
                "(its initialiser left it unset)"
            )


def _initialiser(model: nn.Module, module_path: str) -> Any:
    """`_init_weights` of the innermost transformers model that holds `module_path` (a composite
    model's sub-models initialise their own modules)."""
    owner, module = model, model
    for part in module_path.split(".") if module_path else ():
        module = module.get_submodule(part)
        if isinstance(module, transformers.PreTrainedModel):
            owner = module
    return owner._init_weights


def _sentinel_like(buffer: torch.Tensor) -> torch.Tensor:
    """A CPU tensor of the buffer's shape and dtype that no initialiser would write: NaN, or the
    smallest integer (booleans have no such value: False)."""
    if buffer.dtype.is_floating_point or buffer.dtype.is_complex:
        return torch.full(buffer.shape, float("nan"), dtype=buffer.dtype)
    if buffer.dtype == torch.bool:
        return torch.zeros(buffer.shape, dtype=torch.bool)
    return torch.full(buffer.shape, torch.iinfo(buffer.dtype).min, dtype=buffer.dtype)


def _holds_sentinel(buffer: torch.Tensor) -> bool:
    if buffer.dtype.is_floating_point or buffer.dtype.is_complex:
        return bool(torch.isnan(buffer).any())
    if buffer.dtype == torch.bool:
        return False
    return bool((buffer == torch.iinfo(buffer.dtype).min).any())

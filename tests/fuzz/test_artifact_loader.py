"""Fuzzing the artifact loader (workers.compression.artifacts.load_compressed) against real tiny
artifacts: a Llama pruned by `id` and one factorised by `block_lowrank`.

compression.json gets valid JSON of the wrong shapes and types, huge, negative and NaN numbers,
missing and unknown keys, unknown kinds, synthesised factor entries of every kind, truncated and
garbage bytes and other encodings; config.json, the tokenizer files and model.safetensors get the
same treatment. The loader returns a model that runs, or raises the project's own error with its
code (invalid_artifact, model_corrupt for unreadable weights, model_refused,
unsupported_architecture); never anything else. `core.kinds.from_entry` is fuzzed on its own.
A model folder's corrupt weights (workers.models.load_model) give model_corrupt too.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import os
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from core.errors import PareError
from core.kinds import KINDS, LinearKind, from_entry
from tests import factories
from tests.fuzz import Tally, fuzz
from workers.compression.artifacts import MANIFEST, WEIGHTS, load_compressed

pytestmark = pytest.mark.filterwarnings("ignore:Initializing zero-element tensors is a no-op")
TALLY = Tally("tests/fuzz/test_artifact_loader.py")
CODES = {"invalid_artifact", "model_corrupt", "model_refused", "unsupported_architecture"}
_names = itertools.count()
Path_ = tuple[Any, ...]


@pytest.fixture(scope="module", autouse=True)
def _figures() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models gain nothing from a second thread
    with TALLY.recording():
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return factories.save_tiny_llama(tmp_path_factory.mktemp("fuzz-model") / "llama")


@pytest.fixture(scope="module")
def artifacts(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fuzz-artifacts")
    return {method: factories.save_compressed_artifact(model_dir, root / method, method=method)[0]
            for method in ("id", "block_lowrank")}


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-cases")


def variant(base: Path, scratch: Path, replace: dict[str, bytes | None]) -> Path:
    """A copy of `base` (hard links) with the files in `replace` rewritten (None: removed)."""
    out = scratch / f"case{next(_names)}"
    out.mkdir()
    for file in base.iterdir():
        if file.name not in replace:
            os.link(file, out / file.name)
    for name, data in replace.items():
        if data is not None:
            (out / name).write_bytes(data)
    return out


def loaded(folder: Path, *, with_tokenizer: bool = False) -> None:
    """load_compressed: a model that runs a forward pass, or a project error with a known code."""
    result = TALLY.outcome(lambda: load_compressed(folder, with_tokenizer=with_tokenizer),
                           (PareError,), CODES)
    if not isinstance(result, Exception):
        model, _ = result
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([[1, 2, 3]])).logits
        assert logits.shape[:2] == (1, 3)
    shutil.rmtree(folder, ignore_errors=True)


# ----- JSON mutation ---------------------------------------------------------------------------

SCALAR = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**64), 2**64),
    st.sampled_from([10**30, -(10**30), 2**63, 2**62]),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=10),
    st.sampled_from(["linear", "lowrank", "mpo", "Linear", "__class__", "model.layers.0",
                     "pare.compressed/1"]),
)
JSON = st.recursive(SCALAR, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=10)


def paths(value: Any, prefix: Path_ = (), depth: int = 12) -> Iterator[Path_]:
    """Every path into a JSON value (the root included), down to `depth` steps."""
    yield prefix
    if len(prefix) >= depth:
        return
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths(item, (*prefix, key), depth)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from paths(item, (*prefix, i), depth)


def tweaks(value: Any) -> st.SearchStrategy[Any]:
    """Values near `value`: off by one, zero, negated, huge, of another type."""
    if isinstance(value, bool):
        return st.sampled_from([not value, 0, 1, "true", None])
    if isinstance(value, int):
        return st.sampled_from([value + 1, value - 1, 0, -value, value * 2, value // 2, 2**31, 2**63, 10**30,
                                float(value), str(value), True, math.nan, math.inf, [value]])
    if isinstance(value, str):
        return st.sampled_from(["", value + "x", value.upper(), value[:-1], value * 2, 0, None, [value]])
    if isinstance(value, list):
        return st.sampled_from([[], value[:-1], [*value, value[-1] if value else 1], value[::-1],
                                {"0": value}, [value], len(value)])
    if isinstance(value, dict):
        return st.sampled_from([{}, [], list(value.values()), dict(list(value.items())[:-1])])
    return JSON


def entry_of(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    """A structure entry of `kind` with small sizes: some describe a buildable Linear, most do not."""
    small = st.integers(0, 70)
    sizes = st.lists(st.integers(0, 9), min_size=0, max_size=4)
    fields: dict[str, st.SearchStrategy[Any]] = {
        "out": st.sampled_from([16, 26, 32, 64]) | small, "in": st.sampled_from([16, 26, 32, 64]) | small,
        "bias": st.booleans(),
    }
    factors: dict[str, dict[str, st.SearchStrategy[Any]]] = {
        "linear": {},
        "lowrank": {"rank": small},
        "block_lowrank": {"grid": st.lists(st.integers(0, 4), min_size=0, max_size=3),
                          "ranks": st.lists(st.lists(st.integers(-1, 9), max_size=3), max_size=3)},
        "monarch": {"blocks": st.integers(0, 8), "rank": st.integers(0, 8)},
        "mpo": {"out_factors": sizes, "in_factors": sizes, "bonds": sizes,
                "order": st.sampled_from(["left", "right", "up", ""])},
    }
    fields |= factors[kind]
    return st.fixed_dictionaries({"type": st.just(kind), **fields})


ENTRY = st.sampled_from(sorted(KINDS)).flatmap(entry_of)


@st.composite
def mutated_manifest(draw: st.DrawFn, manifest: dict[str, Any], depth: int = 12) -> Any:
    """One to three edits anywhere in the manifest (most inside `structure`): a value replaced by
    random JSON or by a near value, a key removed, renamed or added, a module entry replaced by an
    entry of another kind."""
    doc: Any = copy.deepcopy(manifest)
    for _ in range(draw(st.integers(1, 3))):
        every = list(paths(doc, depth=depth))
        inside = [p for p in every if p[:1] == ("structure",)]
        where = draw(st.sampled_from(inside if inside and draw(st.integers(0, 9)) < 7 else every))
        parent, key = _parent(doc, where)
        old = doc if parent is None else parent[key]
        op = draw(st.sampled_from(["json", "tweak", "tweak", "delete", "rename", "add", "entry"]))
        if op == "json" or parent is None and op in ("delete", "rename"):
            new = draw(JSON)
        elif op == "tweak":
            new = draw(tweaks(old))
        elif op == "entry":
            new = draw(ENTRY)
        elif op == "add" and isinstance(old, dict):
            name = draw(st.text(max_size=8) | st.sampled_from(["type", "rank", "bias", "__class__"]))
            old[name] = draw(JSON)
            continue
        elif op == "delete":
            del parent[key]
            continue
        elif op == "rename" and isinstance(parent, dict):
            text = str(key)
            renamed = draw(st.sampled_from([f"{text}x", text.replace("0", "00"), text.replace("0", "2"),
                                            text.replace("0", "-1"), text.upper()]))
            parent[renamed] = parent.pop(key)
            continue
        else:
            new = draw(JSON)
        if parent is None:
            doc = new
        else:
            parent[key] = new
    return doc


def _parent(doc: Any, where: Path_) -> tuple[Any, Any]:
    if not where:
        return None, None
    node = doc
    for step in where[:-1]:
        node = node[step]
    return node, where[-1]


# ----- compression.json --------------------------------------------------------------------------

@fuzz(150)
@given(data=st.data(), method=st.sampled_from(["id", "block_lowrank"]))
def test_compression_json_structured(artifacts: dict[str, Path], scratch: Path, data: st.DataObject,
                                     method: str) -> None:
    base = artifacts[method]
    manifest = json.loads((base / MANIFEST).read_text())
    with TALLY.case():
        doc = data.draw(mutated_manifest(manifest))
        loaded(variant(base, scratch, {MANIFEST: json.dumps(doc).encode()}))


@st.composite
def manifest_bytes(draw: st.DrawFn, text: str) -> bytes:
    """compression.json as bytes: truncated, garbage, re-encoded, with a BOM or NULs, nested past
    the recursion limit, with a 5000-digit integer or a NaN literal where a size was."""
    op = draw(st.sampled_from(["truncate", "garbage", "encoding", "bom", "nul", "deep", "bigint", "nan",
                               "flip"]))
    if op == "truncate":
        return text.encode()[: draw(st.integers(0, len(text)))]
    if op == "garbage":
        return draw(st.binary(max_size=3000))
    if op == "encoding":
        encoding = draw(st.sampled_from(["utf-16", "utf-32", "latin-1"]))
        return text.replace('"id"', '"\u00efd"').encode(encoding, errors="replace")
    if op == "bom":
        return b"\xef\xbb\xbf" + text.encode()
    if op == "nul":
        at = draw(st.integers(0, len(text)))
        return (text[:at] + "\x00" + text[at:]).encode()
    if op == "deep":
        n = draw(st.sampled_from([900, 5000, 100_000]))
        return text.replace('"structure": {', '"structure": ' + "[" * n + "]" * n + ', "x": {', 1).encode()
    if op == "bigint":
        digits = "3" * draw(st.sampled_from([4300, 4301, 9000]))
        return text.replace('"in": 32', f'"in": {digits}', 1).encode()
    if op == "nan":
        literal = draw(st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "32.0", "3.2e1"]))
        return text.replace('"in": 32', f'"in": {literal}', 1).encode()
    data = text.encode()
    at = draw(st.integers(0, len(data) - 1))
    return data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1:]


@fuzz(80)
@given(data=st.data())
def test_compression_json_bytes(artifacts: dict[str, Path], scratch: Path, data: st.DataObject) -> None:
    base = artifacts["id"]
    with TALLY.case():
        raw = data.draw(manifest_bytes((base / MANIFEST).read_text()))
        loaded(variant(base, scratch, {MANIFEST: raw}))


@fuzz(300)
@given(entry=ENTRY | st.dictionaries(st.sampled_from([
    "type", "out", "in", "bias", "rank", "grid", "ranks", "blocks", "out_factors", "in_factors", "bonds",
    "order",
]), JSON))
def test_kind_entries(entry: dict[str, Any]) -> None:
    """from_entry gives a validated kind, whose MACs and weights are non-negative integers, or
    invalid_artifact."""
    with TALLY.case():
        kind = TALLY.outcome(lambda: from_entry(entry), (PareError,), {"invalid_artifact"})
        if isinstance(kind, LinearKind):
            for figure in (kind.macs_per_token(), kind.params(), kind.macs(16)):
                assert isinstance(figure, int) and not isinstance(figure, bool) and figure >= 0


# ----- config.json, tokenizer files, weights ------------------------------------------------------

SIZES = ["num_hidden_layers", "hidden_size", "num_attention_heads", "num_key_value_heads", "head_dim",
         "intermediate_size"]

@fuzz(80)
@given(data=st.data())
def test_config_json(artifacts: dict[str, Path], scratch: Path, data: st.DataObject) -> None:
    """Sizes, counts and types in config.json changed (a billion layers included), keys removed,
    the file garbled: refused before anything big is built."""
    base = artifacts["id"]
    config = json.loads((base / "config.json").read_text())
    keys = sorted(config)
    with TALLY.case():
        if data.draw(st.integers(0, 4)) == 0:
            raw = data.draw(st.binary(max_size=200)
                            | st.sampled_from([b"", b"[]", b"null", b'{"model_type": 3}']))
        else:
            for _ in range(data.draw(st.integers(1, 3))):
                key = data.draw(st.sampled_from([*keys, *SIZES]))
                if data.draw(st.integers(0, 5)) == 0:
                    config.pop(key, None)
                else:
                    extreme = st.sampled_from([0, -1, 10**9, 10**12])
                    config[key] = data.draw(tweaks(config.get(key, 1)) | extreme)
            raw = json.dumps(config).encode()
        loaded(variant(base, scratch, {"config.json": raw}))


@fuzz(40)
@given(data=st.data(), name=st.sampled_from(["tokenizer.json", "tokenizer_config.json"]))
def test_tokenizer_files(artifacts: dict[str, Path], scratch: Path, data: st.DataObject, name: str) -> None:
    base = artifacts["id"]
    with TALLY.case():
        if data.draw(st.booleans()):
            raw = data.draw(manifest_bytes((base / name).read_text()))
        else:
            doc = json.loads((base / name).read_text())
            raw = json.dumps(data.draw(mutated_manifest(doc, depth=3))).encode()
        loaded(variant(base, scratch, {name: raw}), with_tokenizer=True)


def _header(data: bytes) -> tuple[int, dict[str, Any]]:
    (size,) = struct.unpack("<Q", data[:8])
    return size, json.loads(data[8:8 + size])


@st.composite
def weights(draw: st.DrawFn, data: bytes) -> bytes | None:
    """model.safetensors: removed, truncated, byte-flipped (in the header or the tensors), its
    header length or header JSON rewritten (dtypes, shapes, offsets), or re-saved with tensors of
    another dtype or shape, dropped, renamed or added."""
    size, header = _header(data)
    op = draw(st.sampled_from(["remove", "truncate", "flip", "length", "header", "tensors", "tensors"]))
    if op == "remove":
        return None
    if op == "truncate":
        return data[: draw(st.integers(0, len(data) - 1))]
    if op == "flip":
        at = draw(st.integers(0, min(len(data) - 1, 8 + size + 64)) | st.integers(0, len(data) - 1))
        return data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1:]
    if op == "length":
        fake = draw(st.sampled_from([0, 1, size - 1, size + 1, len(data), 2**63, 2**64 - 1]))
        return struct.pack("<Q", fake) + data[8:]
    if op == "header":
        doc = draw(mutated_manifest(header))
        body = json.dumps(doc).encode()
        body += b" " * ((8 - len(body) % 8) % 8)
        return struct.pack("<Q", len(body)) + body + data[8 + size:]
    return _resaved(draw, data)


def _resaved(draw: st.DrawFn, data: bytes) -> bytes:
    from safetensors.torch import load, save

    state = load(data)
    names = sorted(state)
    for _ in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from(names))
        if name not in state:
            continue
        op = draw(st.sampled_from(["dtype", "shape", "drop", "rename", "add", "nan"]))
        tensor = state[name]
        if op == "dtype":
            state[name] = tensor.to(draw(st.sampled_from([torch.float16, torch.bfloat16, torch.float64,
                                                          torch.int32, torch.int8, torch.bool])))
        elif op == "shape":
            state[name] = torch.zeros(draw(st.lists(st.integers(0, 70), max_size=3)))
        elif op == "drop":
            del state[name]
        elif op == "rename":
            state[name + draw(st.sampled_from(["x", ".0", "_"]))] = state.pop(name)
        elif op == "add":
            state[draw(st.text(min_size=1, max_size=10))] = torch.zeros(2)
        else:
            state[name] = torch.full_like(tensor, math.nan) if tensor.is_floating_point() else tensor
    return save(state, metadata={"format": "pt"})


@fuzz(100)
@given(data=st.data(), method=st.sampled_from(["id", "block_lowrank"]))
def test_model_safetensors(artifacts: dict[str, Path], scratch: Path, data: st.DataObject,
                           method: str) -> None:
    base = artifacts[method]
    with TALLY.case():
        raw = data.draw(weights((base / WEIGHTS).read_bytes()))
        loaded(variant(base, scratch, {WEIGHTS: raw}))


@fuzz(12)
@given(data=st.data())
def test_a_model_folder_with_corrupt_weights(model_dir: Path, scratch: Path, data: st.DataObject) -> None:
    """workers.models.load_model on a model folder whose model.safetensors is truncated, flipped or
    given a false header length: a model, or model_corrupt (never a SafetensorError)."""
    from workers.models import load_model

    raw = (model_dir / WEIGHTS).read_bytes()
    size, _ = _header(raw)
    with TALLY.case():
        op = data.draw(st.sampled_from(["truncate", "flip", "length"]))
        if op == "truncate":
            damaged = raw[: data.draw(st.integers(0, len(raw) - 1))]
        elif op == "flip":
            at = data.draw(st.integers(0, 8 + size - 1))
            damaged = raw[:at] + bytes([raw[at] ^ data.draw(st.integers(1, 255))]) + raw[at + 1:]
        else:
            damaged = struct.pack("<Q", data.draw(st.sampled_from([0, size + 8, 2**63]))) + raw[8:]
        folder = variant(model_dir, scratch, {WEIGHTS: damaged})
        TALLY.outcome(lambda: load_model(str(folder)), (PareError,), {"model_corrupt", "model_refused",
                                                                     "model_not_found"})
        shutil.rmtree(folder, ignore_errors=True)

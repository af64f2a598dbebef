"""Model references: validate a hub id, resolve it offline through the HF cache, inspect its config.

Torch-free on purpose: the API process imports this module to refuse bad submissions early, so it
uses only the standard library (the cache layout is read directly: no torch, no transformers, no
huggingface_hub).

Trust rules, applied before any weight is read:
- ids follow the Hub's naming rules and can never be a path or a URL (`validate_model_id`);
- `auto_map` in config.json or tokenizer_config.json means custom code: refused, never executed;
- weights must be safetensors; a folder with only pickles (.bin/.pt/.pth/.ckpt) is refused
  without opening the pickle (unpickling runs arbitrary code);
- the architecture must be one the compression engine has an adapter for.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.archs import get_spec
from core.errors import ModelNotFound, ModelRefused

log = logging.getLogger(__name__)

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
MAX_ID_LENGTH = 96
MAX_REVISION_LENGTH = 100
_ID_PART = re.compile(r"^[A-Za-z0-9._-]+$")
_SHA = re.compile(r"^[0-9a-f]{40}$")
_REF_FORBIDDEN = re.compile(r"[\s~^:?*\[\\]")
IMPORT_HINT = "run `pare models import-bundled` to place the bundled models in the cache"


@dataclass(frozen=True)
class ResolvedModel:
    """A model found on disk.

    path: the directory holding config.json and the weights (a cache snapshot or a local folder).
    revision: the commit sha of the cache snapshot, or "local" for a plain directory.
    config_sha256: sha256 of config.json's bytes; for local folders it is the only identity there is.
    """

    path: Path
    model_id: str
    revision: str
    config_sha256: str


@dataclass(frozen=True)
class ModelInfo:
    model_type: str
    architectures: list[str]
    config: dict[str, Any]
    num_layers: int | None
    weight_files: list[str] = field(default_factory=list)


def validate_model_id(model_id: str) -> str:
    """Check a Hub repo id ("name" or "org/name"); raise ModelRefused(field="model.id") otherwise."""

    def refuse(why: str) -> ModelRefused:
        return ModelRefused(f"invalid model id {model_id!r}: {why}", field="model.id")

    if not isinstance(model_id, str) or not model_id:
        raise refuse("empty")
    if "\x00" in model_id:
        raise refuse("contains a NUL byte")
    if len(model_id) > MAX_ID_LENGTH:
        raise refuse(f"longer than {MAX_ID_LENGTH} characters")
    if "://" in model_id or model_id.lower().startswith(("http:", "https:", "file:")):
        raise refuse("a URL is not a model id")
    if model_id.startswith(("/", "\\", "~")) or re.match(r"^[A-Za-z]:[\\/]", model_id):
        raise refuse("an absolute path is not a model id")
    if ".." in model_id or "--" in model_id:
        raise refuse("'..' and '--' are not allowed")
    parts = model_id.split("/")
    if len(parts) > 2:
        raise refuse("at most one '/' (org/name)")
    for part in parts:
        if not _ID_PART.match(part):
            raise refuse("only letters, digits, '.', '_' and '-' are allowed in org and name")
        if part.startswith(("-", ".")) or part.endswith(("-", ".")):
            raise refuse("org and name may not start or end with '-' or '.'")
    return model_id


def hub_cache_dir(hf_home: str | os.PathLike[str] | None = None) -> Path:
    """The hub cache folder, read from the environment at call time (not at import time).

    Order: explicit hf_home/hub, $HF_HUB_CACHE, $HF_HOME/hub, ~/.cache/huggingface/hub.
    """
    if hf_home is not None:
        return Path(hf_home) / "hub"
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = (
        os.environ.get("HF_HOME")
        or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "huggingface"
    )
    return Path(home) / "hub"


def _looks_like_path(model: str) -> bool:
    return model.startswith(("/", "./", "../", "~")) or model in (".", "..") or os.sep + os.sep in model


def _config_sha256(path: Path) -> str:
    config = path / "config.json"
    return hashlib.sha256(config.read_bytes()).hexdigest() if config.is_file() else ""


def validate_revision(revision: str) -> str:
    """A commit sha or a branch/tag name by git's ref rules (git check-ref-format), never a path.

    Raises ModelRefused(field="model.revision"): no '..', no leading or trailing '/', no empty or
    dot-led component, no control characters, none of `~^:?*[\\` or '@{', no '.lock' suffix.
    """

    def refuse(why: str) -> ModelRefused:
        return ModelRefused(f"invalid revision {revision!r}: {why}", field="model.revision")

    if not isinstance(revision, str) or not revision:
        raise refuse("empty")
    if len(revision) > MAX_REVISION_LENGTH:
        raise refuse(f"longer than {MAX_REVISION_LENGTH} characters")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in revision) or _REF_FORBIDDEN.search(revision):
        raise refuse("control characters, spaces and ~^:?*[\\ are not allowed")
    if ".." in revision or "@{" in revision or revision == "@":
        raise refuse("'..' and '@{' are not allowed")
    if revision.startswith("/") or revision.endswith(("/", ".", ".lock")):
        raise refuse("a revision may not start with '/' or end with '/', '.' or '.lock'")
    if any(not part or part.startswith(".") for part in revision.split("/")):
        raise refuse("empty or dot-led path components are not allowed")
    return revision


def _cached_snapshot(model_id: str, revision: str, cache: Path) -> Path | None:
    """The snapshot folder a hub id and revision name in the cache layout, or None.

    <cache>/models--ORG--NAME/refs/<revision> holds a commit sha; snapshots/<sha>/ holds the
    files. A 40-hex revision names a snapshot directly. Nothing outside the repo folder is read.
    """
    repo = cache / ("models--" + model_id.replace("/", "--"))
    sha = revision if _SHA.match(revision) else None
    if sha is None:
        ref = repo / "refs" / revision
        if not ref.is_file():
            return None
        sha = ref.read_text(encoding="ascii", errors="replace").strip()
        if not _SHA.match(sha):
            return None
    snapshot = repo / "snapshots" / sha
    return snapshot if snapshot.is_dir() and (snapshot / "config.json").is_file() else None


def _under_root(model_id: str, root: Path) -> Path | None:
    """`root/<org>/<name>` for a validated hub id, if it is a model folder whose real path stays
    inside the real root (a symlink out of the root is not followed)."""
    base = root.resolve()
    candidate = (base / model_id).resolve()
    if not candidate.is_relative_to(base) or not (candidate / "config.json").is_file():
        return None
    return candidate


def resolve_model(
    model: str,
    revision: str | None = None,
    *,
    allow_local: bool = True,
    model_root: str | os.PathLike[str] | None = None,
) -> ResolvedModel:
    """Find a model offline: a hub id already in the HF cache, or (`allow_local`) a local directory.

    Hub ids are looked up in `hub_cache_dir()` by the cache layout alone (nothing is ever
    downloaded, no path is built from unvalidated input); `revision` is a branch, a tag or a sha.
    The service calls this with `allow_local=False`: over the API a model is a hub id, never a
    server path, and no error names a server path. An operator may also serve folders under
    `model_root` (PARE_MODEL_ROOT, off by default): a hub-shaped id `org/name` not in the cache is
    then `model_root/org/name`, never anything outside the root.
    """
    if allow_local:
        local = Path(model).expanduser()
        if local.is_dir():
            path = local.resolve()
            return ResolvedModel(path, str(path), "local", _config_sha256(path))
        if _looks_like_path(model):
            raise ModelNotFound(f"no such model directory: {model}", field="model.id")
    validate_model_id(model)
    wanted = validate_revision(revision) if revision is not None else "main"
    snapshot = _cached_snapshot(model, wanted, hub_cache_dir())
    if snapshot is None and model_root is not None and revision in (None, "local"):
        folder = _under_root(model, Path(model_root))
        if folder is not None:
            return ResolvedModel(folder, model, "local", _config_sha256(folder))
    if snapshot is None:
        at = f" at revision {revision!r}" if revision else ""
        where = "neither a local directory nor in" if allow_local else "not in"
        raise ModelNotFound(
            f"model {model!r}{at} is {where} the offline model cache (this service works offline; "
            f"{IMPORT_HINT})",
            field="model.id",
        )
    return ResolvedModel(snapshot, model, snapshot.name, _config_sha256(snapshot))


def _read_json(path: Path, what: str) -> dict[str, Any]:
    """`what` names the file for people (the model id and file name, never a server path)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelRefused(f"{what} is not readable JSON: {exc}", field="model.id") from exc
    if not isinstance(data, dict):
        raise ModelRefused(f"{what} is not a JSON object", field="model.id")
    return data


def _weight_files(path: Path, label: str) -> list[str]:
    """Names of the weight files, refusing pickle-only folders (the pickle is never opened)."""
    files = sorted(p.name for p in path.iterdir() if p.is_file())
    safetensors = [f for f in files if f.endswith(".safetensors")]
    if safetensors:
        return safetensors
    pickles = [f for f in files if f.endswith(PICKLE_SUFFIXES)]
    if pickles:
        raise ModelRefused(
            f"{label} has only pickle weights ({', '.join(pickles)}); pickles can run code when loaded, "
            "so only safetensors are accepted (convert with `safetensors` on a trusted machine)",
            field="model.id",
        )
    raise ModelRefused(f"{label} has no weight files (*.safetensors)", field="model.id")


def inspect_model(resolved: ResolvedModel) -> ModelInfo:
    """Read config.json as plain JSON and apply the trust rules (see the module docstring)."""
    path = resolved.path
    config_path = path / "config.json"
    if not config_path.is_file():
        raise ModelRefused(
            f"{resolved.model_id} is not a transformers model folder: no config.json", field="model.id"
        )
    config = _read_json(config_path, f"config.json of {resolved.model_id}")
    tokenizer_config = path / "tokenizer_config.json"
    custom = "auto_map" in config or (
        tokenizer_config.is_file()
        and "auto_map" in _read_json(tokenizer_config, f"tokenizer_config.json of {resolved.model_id}")
    )
    if custom:
        raise ModelRefused(
            f"{resolved.model_id} needs custom code (auto_map); remote code is never executed",
            field="model.id",
        )
    model_type = str(config.get("model_type", ""))
    get_spec(model_type, field="model.id")
    weights = _weight_files(path, resolved.model_id)
    layers = config.get("num_hidden_layers", config.get("n_layer", config.get("num_layers")))
    archs = config.get("architectures") or []
    if not isinstance(archs, list) or not all(isinstance(a, str) for a in archs):
        raise ModelRefused(f"config.json of {resolved.model_id}: architectures must be a list of names",
                           field="model.id")
    if layers is not None and (isinstance(layers, bool) or not isinstance(layers, int) or layers < 1):
        raise ModelRefused(f"config.json of {resolved.model_id}: the layer count must be a positive integer",
                           field="model.id")
    return ModelInfo(
        model_type=model_type,
        architectures=list(archs),
        config=config,
        num_layers=layers,
        weight_files=weights,
    )

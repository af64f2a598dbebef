"""Tiny random models saved once per session; real-model fixtures for the `slow` tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import factories


@pytest.fixture(scope="session")
def llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return factories.save_tiny_llama(tmp_path_factory.mktemp("llama"))


@pytest.fixture(scope="session")
def gpt2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return factories.save_tiny_gpt2(tmp_path_factory.mktemp("gpt2"))


@pytest.fixture(scope="session")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return factories.save_tiny_bert(tmp_path_factory.mktemp("bert"))


@pytest.fixture(scope="session")
def bert_cls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return factories.save_tiny_bert(tmp_path_factory.mktemp("bert_cls"), head=True)



@pytest.fixture(autouse=True)
def _one_torch_thread(request: pytest.FixtureRequest) -> Iterator[None]:
    """Tiny models gain nothing from a second thread, and on a shared 2-core machine two OpenMP
    threads spin-wait for a busy core (the suite runs 2-4x slower). Slow tests keep the default."""
    if request.node.get_closest_marker("slow"):
        yield
        return
    from workers.evaluation.base import torch_threads

    with torch_threads(1):
        yield

"""Tiny tokenizers for the data tests (no hub, built in milliseconds)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests import factories


@pytest.fixture(scope="session")
def bert_tok() -> Any:
    return factories.bert_tokenizer()


@pytest.fixture(scope="session")
def bpe_tok() -> Any:
    return factories.bpe_tokenizer()


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

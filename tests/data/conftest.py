"""Tiny tokenizers for the data tests (no hub, built in milliseconds)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.evaluation import tiny


@pytest.fixture(scope="session")
def bert_tok() -> Any:
    return tiny.bert_tokenizer()


@pytest.fixture(scope="session")
def bpe_tok() -> Any:
    return tiny.bpe_tokenizer()

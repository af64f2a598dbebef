"""Perplexity and token accuracy against a hand computation on tiny random causal models."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from core.errors import InvalidCalibrationData, InvalidSpec
from workers.data import DataSource
from workers.evaluation import TASKS, run_task
from workers.evaluation.perplexity import window_plan
from workers.models import load_model

TEXT = "\n".join(
    f"{i} the quick brown fox jumps over the lazy dog while it was the best of times" for i in range(5)
)


@pytest.fixture(scope="module")
def text_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ppl") / "text.txt"
    path.write_text(TEXT + "\n")
    return path


def hand_perplexity(model: Any, ids: list[int], seq_len: int, stride: int) -> tuple[float, float, int]:
    """exp(mean NLL), top-1 accuracy and count, from full logits and explicit loops."""
    nlls, hits = [], []
    for start, first in window_plan(len(ids), seq_len, stride):
        window = torch.tensor([ids[start : start + seq_len]])
        with torch.no_grad():
            logp = torch.log_softmax(model(window).logits[0].double(), dim=-1)
        for t in range(first, seq_len):
            nlls.append(-float(logp[t - 1, window[0, t]]))
            hits.append(int(logp[t - 1].argmax()) == int(window[0, t]))
    return math.exp(sum(nlls) / len(nlls)), sum(hits) / len(hits), len(nlls)


def test_window_plan() -> None:
    assert window_plan(10, 4, 4) == [(0, 1), (4, 1)]  # tail of 2 dropped
    assert window_plan(10, 4, 2) == [(0, 1), (2, 2), (4, 2), (6, 2)]
    assert window_plan(3, 4, 4) == []


@pytest.mark.parametrize("fixture", ["llama_dir", "gpt2_dir"])
@pytest.mark.parametrize(("seq_len", "stride"), [(16, None), (16, 4)])
def test_matches_hand_computation(
    request: pytest.FixtureRequest, fixture: str, text_file: Path, seq_len: int, stride: int | None
) -> None:
    model, tokenizer = load_model(str(request.getfixturevalue(fixture)))
    options = {"seq_len": seq_len, "stride": stride, "batch_size": 3, "logits_chunk": 5}
    result = run_task("perplexity", model, tokenizer, data=DataSource.parse(str(text_file)), options=options)
    ids = tokenizer(text_file.read_text(), add_special_tokens=False)["input_ids"]
    ppl, acc, count = hand_perplexity(model, ids, seq_len, stride or seq_len)
    assert result.metrics["perplexity"] == pytest.approx(ppl, rel=1e-5)
    assert result.metrics["token_accuracy"] == pytest.approx(acc)
    protocol = result.protocol
    assert protocol["num_scored_tokens"] == count and protocol["seq_len"] == seq_len
    assert protocol["stride"] == (stride or seq_len) and protocol["num_tokens"] == len(ids)
    assert len(protocol["text_sha256"]) == 64 and protocol["data"] == str(text_file)


def test_max_tokens_is_a_fixed_prefix(llama_dir: Path, text_file: Path) -> None:
    model, tokenizer = load_model(str(llama_dir))
    result = run_task(
        "perplexity",
        model,
        tokenizer,
        data=DataSource.parse(str(text_file)),
        options={"seq_len": 8, "max_tokens": 40},
    )
    assert result.protocol["num_tokens"] == 40 and result.protocol["num_windows"] == 5
    ids = tokenizer(text_file.read_text(), add_special_tokens=False)["input_ids"][:40]
    assert result.metrics["perplexity"] == pytest.approx(hand_perplexity(model, ids, 8, 8)[0], rel=1e-5)


def test_too_short_text_and_bad_options(llama_dir: Path, tmp_path: Path) -> None:
    model, tokenizer = load_model(str(llama_dir))
    short = tmp_path / "short.txt"
    short.write_text("a few words\n")
    with pytest.raises(InvalidCalibrationData, match="short.txt: too few tokens"):
        run_task("perplexity", model, tokenizer, data=DataSource.parse(str(short)), options={"seq_len": 512})
    with pytest.raises(InvalidSpec, match="seq_lenn"):
        run_task("perplexity", model, tokenizer, data=DataSource.parse(str(short)), options={"seq_lenn": 5})
    with pytest.raises(InvalidSpec, match="needs --data"):
        run_task("perplexity", model, tokenizer, data=None)


def test_unknown_task_lists_the_tasks(llama_dir: Path) -> None:
    model, tokenizer = load_model(str(llama_dir))
    with pytest.raises(InvalidSpec) as info:
        run_task("bleu", model, tokenizer, data=None)
    assert all(task in str(info.value) for task in TASKS)
    assert TASKS == ("perplexity", "classification", "sts", "latency")

"""build_calibration: shapes, padding, modes, determinism, fingerprints, errors; no global RNG use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from core.errors import InvalidCalibrationData, InvalidSpec
from workers.data import build_calibration

LONG_DOC = " ".join(["the quick brown fox jumps over the lazy dog"] * 30)


@pytest.fixture
def long_txt(tmp_path: Path) -> Path:
    f = tmp_path / "long.txt"
    f.write_text("\n".join(f"{i} {LONG_DOC}" for i in range(6)) + "\n")
    return f


@pytest.fixture
def short_jsonl(tmp_path: Path) -> Path:
    f = tmp_path / "short.jsonl"
    f.write_text("".join(f'{{"text": "sentence number {i} is a test"}}\n' for i in range(40)))
    return f


def test_chunk_windows_are_exact_slices_of_the_concatenation(bpe_tok: Any, long_txt: Path) -> None:
    cal = build_calibration(
        bpe_tok, str(long_txt), num_samples=10, max_seq_length=32, seed=0, mode="chunk", batch_size=4
    )
    assert cal.mode == "chunk" and cal.num_samples == 10 and cal.num_tokens == 320
    assert [b["input_ids"].shape for b in cal.batches] == [(4, 32), (4, 32), (2, 32)]
    assert all(b["attention_mask"].all() for b in cal.batches)
    joined = bpe_tok.eos_token.join(line for line in long_txt.read_text().splitlines() if line)
    ids = bpe_tok(joined, add_special_tokens=False)["input_ids"]
    text = " ".join(map(str, ids)) + " "
    for row in torch.cat([b["input_ids"] for b in cal.batches]).tolist():
        assert " ".join(map(str, row)) + " " in text


def test_same_seed_same_fingerprint_other_seed_differs(bpe_tok: Any, long_txt: Path) -> None:
    kwargs: dict[str, Any] = {"num_samples": 8, "max_seq_length": 32, "mode": "chunk"}
    a = build_calibration(bpe_tok, str(long_txt), seed=1, **kwargs)
    b = build_calibration(bpe_tok, str(long_txt), seed=1, batch_size=3, **kwargs)
    c = build_calibration(bpe_tok, str(long_txt), seed=2, **kwargs)
    assert a.fingerprint == b.fingerprint != c.fingerprint
    assert len(a.fingerprint) == 64
    assert torch.equal(
        torch.cat([x["input_ids"] for x in a.batches]), torch.cat([x["input_ids"] for x in b.batches])
    )


def test_global_random_state_is_untouched(bpe_tok: Any, long_txt: Path) -> None:
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    build_calibration(bpe_tok, str(long_txt), num_samples=4, max_seq_length=16, seed=0, mode="chunk")
    build_calibration(bpe_tok, str(long_txt), num_samples=4, max_seq_length=16, seed=0, mode="sentences")
    assert torch.equal(torch.random.get_rng_state(), state)


def test_sentences_without_replacement_padded_right(bert_tok: Any, short_jsonl: Path) -> None:
    cal = build_calibration(
        bert_tok, str(short_jsonl), num_samples=40, max_seq_length=64, seed=0, batch_size=16
    )
    assert cal.mode == "sentences"
    rows = [
        r
        for b in cal.batches
        for r in zip(b["input_ids"].tolist(), b["attention_mask"].tolist(), strict=True)
    ]
    sequences = [tuple(i for i, m in zip(ids, mask, strict=True) if m) for ids, mask in rows]
    assert len(set(sequences)) == 40  # every sentence exactly once
    for ids, mask in rows:
        n = sum(mask)
        assert mask == [1] * n + [0] * (len(mask) - n)
        assert ids[0] == bert_tok.cls_token_id and ids[n - 1] == bert_tok.sep_token_id
        assert all(i == bert_tok.pad_token_id for i in ids[n:])
    assert cal.num_tokens == sum(int(b["attention_mask"].sum()) for b in cal.batches)


def test_sentences_truncate_and_pad_with_eos_when_no_pad_token(bpe_tok: Any, short_jsonl: Path) -> None:
    assert bpe_tok.pad_token_id is None
    cal = build_calibration(
        bpe_tok, str(short_jsonl), num_samples=5, max_seq_length=4, seed=0, mode="sentences"
    )
    batch = cal.batches[0]
    assert batch["input_ids"].shape[1] <= 4
    padded = batch["input_ids"][batch["attention_mask"] == 0]
    assert (padded == bpe_tok.eos_token_id).all()


def test_auto_mode(bpe_tok: Any, long_txt: Path, short_jsonl: Path, tmp_path: Path) -> None:
    kwargs: dict[str, Any] = {"num_samples": 3, "max_seq_length": 32, "seed": 0}
    assert build_calibration(bpe_tok, str(long_txt), **kwargs).mode == "chunk"
    assert build_calibration(bpe_tok, str(short_jsonl), **kwargs).mode == "sentences"
    short_txt = tmp_path / "short.txt"
    short_txt.write_text("\n".join(f"line {i}" for i in range(10)))
    assert build_calibration(bpe_tok, str(short_txt), **kwargs).mode == "sentences"


def test_list_of_texts(bpe_tok: Any) -> None:
    cal = build_calibration(bpe_tok, ["a b c", "d e f", " "], num_samples=2, max_seq_length=8, seed=0)
    assert cal.num_samples == 2 and cal.mode == "sentences"


def test_too_few_tokens_for_a_window_names_the_file(bpe_tok: Any, tmp_path: Path) -> None:
    f = tmp_path / "tiny.txt"
    f.write_text("just a few words\n")
    with pytest.raises(
        InvalidCalibrationData, match=r"tiny.txt: too few tokens \(\d+\) for one window of max_seq_length=512"
    ):
        build_calibration(bpe_tok, str(f), num_samples=4, max_seq_length=512, seed=0, mode="chunk")


def test_too_few_texts_for_the_samples(bpe_tok: Any, short_jsonl: Path) -> None:
    with pytest.raises(InvalidCalibrationData, match=r"short.jsonl: too few texts \(40\) for 128 samples"):
        build_calibration(bpe_tok, str(short_jsonl), num_samples=128, max_seq_length=32, seed=0)


def test_bad_parameters(bpe_tok: Any, short_jsonl: Path) -> None:
    with pytest.raises(InvalidSpec, match="mode 'windows'"):
        build_calibration(bpe_tok, str(short_jsonl), num_samples=2, max_seq_length=32, seed=0, mode="windows")
    with pytest.raises(InvalidSpec):
        build_calibration(bpe_tok, str(short_jsonl), num_samples=0, max_seq_length=32, seed=0)

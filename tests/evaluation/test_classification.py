"""Classification accuracy and macro-F1: batched, padded predictions equal one-at-a-time ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from core.errors import InvalidCalibrationData, InvalidSpec
from workers.data import DataSource
from workers.evaluation import run_task
from workers.evaluation.classification import macro_f1
from workers.models import load_model

SENTENCES = [
    "the quick brown fox",
    "a man is playing a guitar on the street",
    "hello",
    "it was the worst of times",
    "stocks fell sharply today as markets reacted to the news and the dog",
    "lazy dog",
    "best of times",
    "a test",
]


def test_macro_f1_known_values() -> None:
    assert macro_f1([0, 0, 1, 1], [0, 0, 1, 1]) == 1.0
    # class 0: tp 1 fp 1 fn 1 -> 0.5; class 1: tp 1 fp 1 fn 1 -> 0.5
    assert macro_f1([0, 0, 1, 1], [0, 1, 0, 1]) == pytest.approx(0.5)
    # class 0: tp 2 fp 2 fn 0 -> 2/3; class 1: tp 0 fp 0 fn 2 -> 0
    assert macro_f1([0, 0, 1, 1], [0, 0, 0, 0]) == pytest.approx(1 / 3)


def one_at_a_time(model: Any, tokenizer: Any, texts: list[str], pairs: list[str] | None = None) -> list[int]:
    out = []
    for i, text in enumerate(texts):
        enc = tokenizer(text, pairs[i] if pairs else None, return_tensors="pt")
        with torch.no_grad():
            out.append(int(model(**enc).logits.argmax(-1)))
    return out


@pytest.fixture(scope="module")
def classifier(bert_cls_dir: Path) -> tuple[Any, Any]:
    return load_model(str(bert_cls_dir))


def test_accuracy_matches_unbatched_predictions(classifier: tuple[Any, Any], tmp_path: Path) -> None:
    model, tokenizer = classifier
    predicted = one_at_a_time(model, tokenizer, SENTENCES)
    gold = [p if i % 3 else 1 - p for i, p in enumerate(predicted)]  # 3 of 8 wrong
    f = tmp_path / "dev.tsv"
    f.write_text("sentence\tlabel\n" + "".join(f"{s}\t{g}\n" for s, g in zip(SENTENCES, gold, strict=True)))
    result = run_task(
        "classification", model, tokenizer, data=DataSource.parse(str(f)), options={"batch_size": 3}
    )
    assert result.metrics["accuracy"] == pytest.approx(5 / 8)
    assert result.metrics["macro_f1"] == pytest.approx(macro_f1(gold, predicted))
    assert result.protocol["num_examples"] == 8 and result.protocol["text_columns"] == ["sentence"]


def test_pairs_and_named_columns(classifier: tuple[Any, Any], tmp_path: Path) -> None:
    model, tokenizer = classifier
    firsts, seconds = SENTENCES[:4], SENTENCES[4:]
    predicted = one_at_a_time(model, tokenizer, firsts, seconds)
    f = tmp_path / "pairs.tsv"
    f.write_text(
        "sentence1\tsentence2\tlabel\n"
        + "".join(f"{a}\t{b}\t{p}\n" for a, b, p in zip(firsts, seconds, predicted, strict=True))
    )
    result = run_task(
        "classification", model, tokenizer, data=DataSource.parse(str(f)), options={"batch_size": 2}
    )
    assert result.metrics["accuracy"] == 1.0 and result.protocol["text_columns"] == ["sentence1", "sentence2"]
    g = tmp_path / "named.csv"
    g.write_text(
        "body,y\n"
        + "".join(f"{s},{p}\n" for s, p in zip(firsts, one_at_a_time(model, tokenizer, firsts), strict=True))
    )
    result = run_task("classification", model, tokenizer, data=DataSource.parse(f"{g}:body:y"))
    assert result.metrics["accuracy"] == 1.0


def test_bad_labels_and_models(classifier: tuple[Any, Any], bert_dir: Path, tmp_path: Path) -> None:
    model, tokenizer = classifier
    f = tmp_path / "bad.tsv"
    f.write_text("sentence\tlabel\ngood\tpositive\n")
    with pytest.raises(InvalidCalibrationData, match="bad.tsv: row 1 has label 'positive'"):
        run_task("classification", model, tokenizer, data=DataSource.parse(str(f)))
    f.write_text("sentence\tlabel\ngood\t7\n")
    with pytest.raises(InvalidCalibrationData, match="label 7 out of range"):
        run_task("classification", model, tokenizer, data=DataSource.parse(str(f)))
    f.write_text("text\tgold\ngood\t1\n")
    with pytest.raises(InvalidCalibrationData, match=r"unknown column 'label' \(available: text, gold\)"):
        run_task("classification", model, tokenizer, data=DataSource.parse(str(f)))
    base, base_tok = load_model(str(bert_dir))
    with pytest.raises(InvalidSpec, match="ForSequenceClassification"):
        run_task("classification", base, base_tok, data=DataSource.parse(str(f)))

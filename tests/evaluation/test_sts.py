"""STS: gold scores built from unpadded, one-sentence-at-a-time embeddings must give Spearman 1."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from core.errors import InvalidCalibrationData
from tests.factories import CORPUS
from workers.data import DataSource
from workers.evaluation import run_task
from workers.models import load_model

PAIRS = [(a, b) for a in CORPUS for b in CORPUS if a < b] + [
    ("hello", "hello world"),
    ("dog", "the lazy dog"),
]


def hand_cosine(model: Any, tokenizer: Any, a: str, b: str) -> float:
    """Mean of all token states of one unpadded sentence, normalised; then the dot product."""

    def embed(text: str) -> torch.Tensor:
        with torch.no_grad():
            hidden = model.base_model(**tokenizer(text, return_tensors="pt")).last_hidden_state[0]
        return torch.nn.functional.normalize(hidden.mean(0), dim=0)

    return float(embed(a) @ embed(b))


@pytest.fixture(scope="module")
def encoder_and_scores(bert_dir: Path) -> tuple[Any, Any, list[float]]:
    model, tokenizer = load_model(str(bert_dir))
    return model, tokenizer, [hand_cosine(model, tokenizer, a, b) for a, b in PAIRS]


def test_glue_layout_perfect_and_reversed(
    encoder_and_scores: tuple[Any, Any, list[float]], tmp_path: Path
) -> None:
    model, tokenizer, scores = encoder_and_scores
    for sign, expected in ((1, 1.0), (-1, -1.0)):
        f = tmp_path / f"dev{sign}.tsv"
        f.write_text(
            "index\tgenre\tsentence1\tsentence2\tscore\n"
            + "".join(
                f"{i}\tmain\t{a}\t{b}\t{sign * s:.9f}\n"
                for i, ((a, b), s) in enumerate(zip(PAIRS, scores, strict=True))
            )
        )
        result = run_task("sts", model, tokenizer, data=DataSource.parse(str(f)), options={"batch_size": 4})
        assert result.metrics["spearman"] == pytest.approx(expected)
        assert result.protocol["layout"] == "glue" and result.protocol["num_pairs"] == len(PAIRS)


def test_original_sts_benchmark_layout(
    encoder_and_scores: tuple[Any, Any, list[float]], tmp_path: Path
) -> None:
    model, tokenizer, scores = encoder_and_scores
    ranks = torch.tensor(scores).argsort().argsort().tolist()  # any monotone transform of the truth
    f = tmp_path / "sts-dev.tsv"
    f.write_text(
        "".join(
            f"main-captions\tMSRvid\t2012test\t{i:04d}\t{r / 10:.3f}\t{a}\t{b}\n"
            for i, ((a, b), r) in enumerate(zip(PAIRS, ranks, strict=True))
        )
    )
    result = run_task("sts", model, tokenizer, data=DataSource.parse(str(f)))
    assert result.protocol["layout"] == "sts-benchmark"
    assert result.metrics["spearman"] == pytest.approx(1.0)


def test_a_model_with_a_head_uses_its_base_model(bert_cls_dir: Path, tmp_path: Path) -> None:
    model, tokenizer = load_model(str(bert_cls_dir))
    scores = [hand_cosine(model, tokenizer, a, b) for a, b in PAIRS]
    f = tmp_path / "named.tsv"
    f.write_text(
        "x\ty\tgold\n" + "".join(f"{a}\t{b}\t{s}\n" for (a, b), s in zip(PAIRS, scores, strict=True))
    )
    result = run_task("sts", model, tokenizer, data=DataSource.parse(f"{f}:x,y:gold"))
    assert result.metrics["spearman"] == pytest.approx(1.0)


def test_unscored_or_unknown_layout(encoder_and_scores: tuple[Any, Any, list[float]], tmp_path: Path) -> None:
    model, tokenizer, _ = encoder_and_scores
    f = tmp_path / "test.tsv"
    f.write_text("index\tsentence1\tsentence2\nx\ta b\tc d\n")
    with pytest.raises(InvalidCalibrationData, match="test.tsv: not an STS layout"):
        run_task("sts", model, tokenizer, data=DataSource.parse(str(f)))
    f.write_text("sentence1\tsentence2\tscore\na b\tc d\t\n")
    with pytest.raises(InvalidCalibrationData, match="row 1 has no numeric gold score"):
        run_task("sts", model, tokenizer, data=DataSource.parse(str(f)))

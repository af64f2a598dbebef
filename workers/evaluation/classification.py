"""Accuracy and macro-F1 of a sequence-classification model on a labeled file (GLUE style).

Columns: `sentence` + `label` (SST-2), or `sentence1` + `sentence2` + `label` (pairs, MRPC/RTE
style); "PATH:text_col:label_col" names them, and "PATH:first,second:label_col" names a pair.
Labels are integer class ids matching the model's head.
"""

from __future__ import annotations

from typing import Any

import torch

from core.errors import InvalidCalibrationData, InvalidSpec
from core.evaluation import ClassificationOptions, part_indices, part_protocol
from workers.data import DataSource, file_sha256, load_table, require_column, text_column
from workers.evaluation.base import (
    TaskResult,
    encode,
    forward_kwargs,
    length_order,
    model_device,
)


def macro_f1(gold: list[int], predicted: list[int]) -> float:
    """Unweighted mean over classes (those in gold or predictions) of F1 = 2TP / (2TP + FP + FN)."""
    scores = []
    for label in sorted(set(gold) | set(predicted)):
        tp = sum(g == label and p == label for g, p in zip(gold, predicted, strict=True))
        fp = sum(g != label and p == label for g, p in zip(gold, predicted, strict=True))
        fn = sum(g == label and p != label for g, p in zip(gold, predicted, strict=True))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return sum(scores) / len(scores)


def _columns(source: DataSource, rows: list[dict[str, Any]], columns: list[str]) -> tuple[list[str], str]:
    """(text columns, label column) named by the source or found by convention."""
    label = require_column(source, columns, source.label_column or "label")
    if source.text_column:
        texts = [require_column(source, columns, c) for c in source.text_column.split(",")]
    elif "sentence1" in columns and "sentence2" in columns:
        texts = ["sentence1", "sentence2"]
    else:
        texts = [text_column(source, rows, columns)]
    if len(texts) > 2:
        raise InvalidSpec(f"{source.describe()}: at most two text columns, got {texts}")
    return texts, label


def _labels(source: DataSource, rows: list[dict[str, Any]], column: str) -> list[int]:
    labels = []
    for number, row in enumerate(rows, start=1):
        try:
            labels.append(int(float(row[column])))
        except (TypeError, ValueError) as exc:
            raise InvalidCalibrationData(
                f"{source.describe()}: row {number} has label {row[column]!r}, not an integer class id"
            ) from exc
    return labels


@torch.inference_mode()
def predict(
    model: torch.nn.Module,
    tokenizer: Any,
    texts: list[str],
    pairs: list[str] | None,
    opts: ClassificationOptions,
) -> list[int]:
    """Argmax class of every example, batched by length."""
    device = model_device(model)
    order = length_order([t + (pairs[i] if pairs else "") for i, t in enumerate(texts)])
    predicted = [0] * len(texts)
    for start in range(0, len(order), opts.batch_size):
        idx = order[start : start + opts.batch_size]
        batch = encode(
            tokenizer,
            [texts[i] for i in idx],
            [pairs[i] for i in idx] if pairs else None,
            max_length=opts.max_length,
            device=device,
        )
        logits = model(**forward_kwargs(model, batch)).logits
        for i, label in zip(idx, logits.argmax(-1).tolist(), strict=True):
            predicted[i] = label
    return predicted


def evaluate_classification(
    model: torch.nn.Module, tokenizer: Any, data: DataSource | None, options: dict[str, Any]
) -> TaskResult:
    opts = ClassificationOptions.parse("classification", options)
    if data is None:
        raise InvalidSpec("task 'classification' needs --data (a labeled file)")
    num_labels = getattr(model.config, "num_labels", None)
    if not type(model).__name__.endswith("ForSequenceClassification"):
        raise InvalidSpec(
            f"task 'classification' needs a ...ForSequenceClassification model, got {type(model).__name__}"
        )
    rows, columns = load_table(data)
    text_cols, label_col = _columns(data, rows, columns)
    rows = [rows[i] for i in part_indices(len(rows), opts)]
    gold = _labels(data, rows, label_col)
    if num_labels is not None and max(gold) >= num_labels:
        raise InvalidCalibrationData(
            f"{data.describe()}: label {max(gold)} out of range for a model with {num_labels} labels"
        )
    texts = [str(row[text_cols[0]] or "") for row in rows]
    pairs = [str(row[text_cols[1]] or "") for row in rows] if len(text_cols) == 2 else None
    predicted = predict(model, tokenizer, texts, pairs, opts)
    accuracy = sum(g == p for g, p in zip(gold, predicted, strict=True)) / len(gold)
    protocol = {
        "data": data.describe(),
        "data_sha256": file_sha256(data.path) if data.path else None,
        "num_examples": len(gold),
        "text_columns": text_cols,
        "label_column": label_col,
        "max_length": opts.max_length,
        "truncation": True,
        **part_protocol(opts),
    }
    return TaskResult(
        "classification", {"accuracy": accuracy, "macro_f1": macro_f1(gold, predicted)}, protocol
    )

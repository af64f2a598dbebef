"""Semantic textual similarity: Spearman correlation of embedding cosines with gold scores (STS-B).

Embedding of a sentence (as sentence-transformers' mean pooling with normalisation):
    h = last_hidden_state of model.base_model              [T, d]
    e = sum_t m_t h_t / sum_t m_t,  e <- e / ||e||_2       (m: attention mask)
    similarity(a, b) = e_a . e_b
spearman = Spearman rank correlation between similarities and gold scores, over all pairs.
Sentences are truncated at 256 tokens (all-MiniLM-L6-v2's max_seq_length).

Layouts: GLUE STS-B (header; sentence1, sentence2, score; dev.tsv) and the original STS
Benchmark (no header; column 4 the score, 5 and 6 the sentences; original/sts-dev.tsv);
"PATH:first,second:score" names the columns of any other file.
"""

from __future__ import annotations

from typing import Any, cast

import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

from core.errors import InvalidCalibrationData, InvalidSpec
from core.evaluation import StsOptions, part_indices, part_protocol
from workers.data import DataSource, file_sha256, load_table, require_column
from workers.evaluation.base import (
    TaskResult,
    encode,
    forward_kwargs,
    length_order,
    model_device,
)

LAYOUTS = {
    "glue": ("sentence1", "sentence2", "score"),
    "sts-benchmark": ("5", "6", "4"),
}


def _layout(source: DataSource, columns: list[str]) -> tuple[str, tuple[str, str, str]]:
    if source.text_column:
        names = source.text_column.split(",")
        if len(names) != 2 or not source.label_column:
            raise InvalidSpec(f"{source.describe()}: name columns as PATH:first,second:score")
        cols = (names[0], names[1], source.label_column)
        return "named", tuple(require_column(source, columns, c) for c in cols)  # type: ignore[return-value]
    for layout, cols in LAYOUTS.items():
        if all(c in columns for c in cols):
            return layout, cols
    raise InvalidCalibrationData(
        f"{source.describe()}: not an STS layout (want sentence1, sentence2, score, or the headerless "
        f"STS Benchmark with the score in column 4); columns: {', '.join(columns)}"
    )


@torch.inference_mode()
def embed(
    model: torch.nn.Module, tokenizer: Any, texts: list[str], *, batch_size: int, max_length: int
) -> torch.Tensor:
    """L2-normalised, attention-mask-weighted mean of the last hidden states: Float[N, d]."""
    encoder = model.base_model
    device = model_device(model)
    order = length_order(texts)
    out: torch.Tensor | None = None
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = encode(tokenizer, [texts[i] for i in idx], max_length=max_length, device=device)
        body = cast(torch.nn.Module, encoder)
        hidden = body(**forward_kwargs(body, batch)).last_hidden_state.float()
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        if out is None:
            out = torch.empty(len(texts), pooled.shape[-1])
        out[torch.tensor(idx)] = F.normalize(pooled, p=2, dim=-1).cpu()
    assert out is not None
    return out


def _scores(source: DataSource, rows: list[dict[str, Any]], column: str) -> list[float]:
    scores = []
    for number, row in enumerate(rows, start=1):
        try:
            scores.append(float(row[column]))
        except (TypeError, ValueError) as exc:
            raise InvalidCalibrationData(
                f"{source.describe()}: row {number} has no numeric gold score in {column!r} ({row[column]!r})"
            ) from exc
    return scores


def evaluate_sts(
    model: torch.nn.Module, tokenizer: Any, data: DataSource | None, options: dict[str, Any]
) -> TaskResult:
    opts = StsOptions.parse("sts", options)
    if data is None:
        raise InvalidSpec("task 'sts' needs --data (an STS-B file)")
    rows, columns = load_table(data)
    layout, (first, second, score) = _layout(data, columns)
    rows = [rows[i] for i in part_indices(len(rows), opts)]
    gold = _scores(data, rows, score)
    if len(gold) < 2:
        raise InvalidCalibrationData(f"{data.describe()}: at least two scored pairs are needed")
    left = embed(
        model,
        tokenizer,
        [str(r[first]) for r in rows],
        batch_size=opts.batch_size,
        max_length=opts.max_length,
    )
    right = embed(
        model,
        tokenizer,
        [str(r[second]) for r in rows],
        batch_size=opts.batch_size,
        max_length=opts.max_length,
    )
    cosine = (left * right).sum(-1).double().numpy()
    rho = float(spearmanr(cosine, gold).statistic)
    protocol = {
        "data": data.describe(),
        "data_sha256": file_sha256(data.path) if data.path else None,
        "layout": layout,
        "num_pairs": len(gold),
        "pooling": "mean (attention mask), L2-normalised, last hidden state of base_model",
        "similarity": "cosine",
        "max_length": opts.max_length,
        **part_protocol(opts),
    }
    return TaskResult("sts", {"spearman": rho}, protocol)

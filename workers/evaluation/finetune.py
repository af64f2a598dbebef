"""A fine-tuned reference classifier: all-MiniLM-L6-v2 + a 2-way head on SST-2 (plain torch loop).

The compression engine needs a dense classifier to compress and a baseline accuracy to compare
against; none ships offline, so one is trained here in a few CPU minutes and cached under a local
id (`pare-local/all-MiniLM-L6-v2-sst2`) that benchmarks and tests resolve like any hub id.

Recipe (all in `FinetuneRecipe`, recorded in the output's finetune.json): BertForSequenceClassification
on the pretrained encoder, AdamW, linear warm-up then linear decay, batch 32, max_length 64,
a seeded subsample of the 60k training sentences, dropout and head initialisation seeded inside
`torch.random.fork_rng` so global random state is left untouched.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from core.hub import resolve_model
from workers.data import DataSource, default_data_dir, file_sha256, load_table, require_column
from workers.evaluation.base import encode, torch_threads
from workers.evaluation.classification import _labels
from workers.models import MINILM_ID, cached_revision, place_in_cache

log = logging.getLogger(__name__)

SST2_MODEL_ID = "pare-local/all-MiniLM-L6-v2-sst2"


@dataclass(frozen=True)
class FinetuneRecipe:
    base_model: str = MINILM_ID
    train_file: str = ""  # default: $PARE_DATA_DIR/sst2/alps_train_split.tsv
    max_train: int = 8000
    epochs: int = 1
    lr: float = 1e-4
    batch_size: int = 32
    max_length: int = 64
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    seed: int = 0

    def train_path(self) -> Path:
        return (
            Path(self.train_file) if self.train_file else default_data_dir() / "sst2" / "alps_train_split.tsv"
        )


def _training_rows(recipe: FinetuneRecipe) -> tuple[list[str], list[int]]:
    """A seeded subsample of max_train (sentence, label) rows."""
    source = DataSource(path=str(recipe.train_path()))
    rows, columns = load_table(source)
    require_column(source, columns, "sentence")
    labels = _labels(source, rows, require_column(source, columns, "label"))
    gen = torch.Generator().manual_seed(recipe.seed)
    picks = torch.randperm(len(rows), generator=gen)[: recipe.max_train].tolist()
    return [rows[i]["sentence"] for i in picks], [labels[i] for i in picks]


def _schedule(optimizer: torch.optim.Optimizer, total: int, warmup: int) -> torch.optim.lr_scheduler.LambdaLR:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train_classifier(recipe: FinetuneRecipe) -> tuple[Any, Any, dict[str, Any]]:
    """Train and return (model, tokenizer, stats); deterministic for a seed on one machine."""
    from transformers import AutoTokenizer, BertForSequenceClassification

    resolved = resolve_model(recipe.base_model)
    texts, labels = _training_rows(recipe)
    tokenizer = AutoTokenizer.from_pretrained(resolved.path, trust_remote_code=False)
    start = time.perf_counter()
    with torch.random.fork_rng():
        torch.manual_seed(recipe.seed)
        model = BertForSequenceClassification.from_pretrained(
            resolved.path,
            num_labels=2,
            id2label={0: "negative", 1: "positive"},
            label2id={"negative": 0, "positive": 1},
            use_safetensors=True,
        )
        losses = _train_loop(model, tokenizer, texts, labels, recipe)
    model.eval()
    stats = {
        "base_revision": resolved.revision,
        "train_sha256": file_sha256(recipe.train_path()),
        "train_examples": len(texts),
        "steps": len(losses),
        "final_loss": sum(losses[-50:]) / len(losses[-50:]),
        "seconds": time.perf_counter() - start,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    return model, tokenizer, stats


def length_grouped_batches(
    texts: list[str], batch_size: int, gen: torch.Generator, group: int = 50
) -> list[list[int]]:
    """Shuffled batches of similar lengths: shuffle, sort each run of group*batch_size examples by
    length, cut it into batches, shuffle the batches. SST-2 phrases vary from 1 to 60 tokens, so
    this cuts the padded (wasted) compute about threefold without changing what is learned."""
    order = torch.randperm(len(texts), generator=gen).tolist()
    span = group * batch_size
    batches = []
    for start in range(0, len(order), span):
        run = sorted(order[start : start + span], key=lambda i: len(texts[i]))
        batches += [run[b : b + batch_size] for b in range(0, len(run), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()]


def _train_loop(
    model: Any, tokenizer: Any, texts: list[str], labels: list[int], recipe: FinetuneRecipe
) -> list[float]:
    model.train()
    no_decay = [p for n, p in model.named_parameters() if "bias" in n or "LayerNorm" in n]
    decay = [p for n, p in model.named_parameters() if not ("bias" in n or "LayerNorm" in n)]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": recipe.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=recipe.lr,
    )
    steps_per_epoch = (len(texts) + recipe.batch_size - 1) // recipe.batch_size
    total = steps_per_epoch * recipe.epochs
    scheduler = _schedule(optimizer, total, int(recipe.warmup_ratio * total))
    gen = torch.Generator().manual_seed(recipe.seed + 1)
    losses: list[float] = []
    for epoch in range(recipe.epochs):
        for idx in length_grouped_batches(texts, recipe.batch_size, gen):
            batch = encode(tokenizer, [texts[i] for i in idx], max_length=recipe.max_length)
            target = torch.tensor([labels[i] for i in idx])
            loss = model(**batch, labels=target).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
            if len(losses) % 100 == 0:
                log.info("epoch %d step %d/%d loss %.4f", epoch, len(losses), total, sum(losses[-100:]) / 100)
    return losses


def _save(model: Any, tokenizer: Any, recipe: FinetuneRecipe, stats: dict[str, Any], folder: Path) -> None:
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    record = {"recipe": {**asdict(recipe), "train_file": str(recipe.train_path())}, **stats}
    (folder / "finetune.json").write_text(json.dumps(record, indent=2) + "\n")


def finetune_sst2(
    recipe: FinetuneRecipe, *, out_dir: Path | None = None, force: bool = False, threads: int | None = None
) -> Path:
    """Fine-tune (or reuse) the SST-2 classifier; returns its folder.

    Default destination: the HF cache as SST2_MODEL_ID (load it with load_model(SST2_MODEL_ID)).
    An existing result is reused unless force is set. `threads` only changes the speed.
    """
    if out_dir is None and not force and (sha := cached_revision(SST2_MODEL_ID)):
        log.info("%s already cached (%s)", SST2_MODEL_ID, sha)
        return resolve_model(SST2_MODEL_ID).path
    if out_dir is not None and not force and (out_dir / "finetune.json").is_file():
        log.info("%s already holds a fine-tuned model", out_dir)
        return out_dir
    with torch_threads(threads):
        model, tokenizer, stats = train_classifier(recipe)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        _save(model, tokenizer, recipe, stats, out_dir)
        return out_dir
    with tempfile.TemporaryDirectory(prefix="pare-sst2-") as tmp:
        _save(model, tokenizer, recipe, stats, Path(tmp))
        return place_in_cache(tmp, SST2_MODEL_ID)

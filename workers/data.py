"""Calibration and evaluation data: local files or Hugging Face datasets -> texts -> token batches.

Torch-free at import time (the API validates data specs with `DataSource.parse`); torch, datasets
and pyarrow are imported inside the functions that need them. Every problem with the data raises
`InvalidCalibrationData` with a message naming the file and what is wrong with it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import re
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import InvalidCalibrationData, InvalidSpec

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

PREFERRED_TEXT_COLUMNS = ("text", "sentence", "sentence1", "content", "document", "question")
CALIBRATION_MODES = ("auto", "chunk", "sentences")
_NUMBER = re.compile(r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$")


@dataclass(frozen=True)
class DataSource:
    """Where texts come from.

    path: a local file (.txt, .jsonl, .csv, .tsv, .parquet) or a `save_to_disk` directory;
          "file.tsv:column" names the column inline.
    hub_id/config/split: a Hugging Face dataset through the `datasets` cache.
    text_column: the column to read (found automatically when None); for sentence-pair
          classification two columns may be given as "first,second".
    label_column: the gold label or score column of labeled data (found automatically when None).
    """

    path: str | None = None
    hub_id: str | None = None
    config: str | None = None
    split: str = "train"
    text_column: str | None = None
    label_column: str | None = None

    @classmethod
    def parse(cls, spec: str) -> DataSource:
        """Parse a command-line data spec.

        Local: "PATH", "PATH:text_col" or "PATH:text_col:label_col". The string is split on a ':'
        only when the part before it exists on disk and the parts after it are not paths, so a file
        whose name contains ':' still works. A `datasets.save_to_disk` directory is a PATH.
        Hub: "hf:ORG/NAME[:CONFIG][@SPLIT][#TEXT_COL[:LABEL_COL]]", split "train" by default, e.g.
        "hf:wikitext:wikitext-2-raw-v1@test#text" or "hf:glue:sst2@validation#sentence:label".
        Hub datasets load through the `datasets` cache (offline when HF_DATASETS_OFFLINE=1).
        """
        spec = spec.strip()
        if not spec:
            raise InvalidCalibrationData("empty data spec")
        if spec.startswith("hf:"):
            return cls._parse_hub(spec)
        if _on_disk(spec):
            return cls(path=spec)
        parts = spec.split(":")
        for n_cols in (1, 2):
            head, cols = ":".join(parts[:-n_cols]), parts[-n_cols:]
            if len(parts) > n_cols and head and _on_disk(head):
                if all(c and "/" not in c and "\\" not in c for c in cols):
                    return cls(path=head, text_column=cols[0], label_column=(cols + [None])[1])
        return cls(path=spec)  # does not exist: load_* reports it

    @classmethod
    def _parse_hub(cls, spec: str) -> DataSource:
        body, _, columns = spec[3:].partition("#")
        body, _, split = body.partition("@")
        hub_id, _, config = body.partition(":")
        text_col, _, label_col = columns.partition(":")
        if not hub_id:
            raise InvalidCalibrationData(f"hub data spec {spec!r} names no dataset (hf:ORG/NAME...)")
        return cls(
            hub_id=hub_id,
            config=config or None,
            split=split or "train",
            text_column=text_col or None,
            label_column=label_col or None,
        )

    def describe(self) -> str:
        """How error messages and protocols name this source."""
        if self.hub_id:
            config = f":{self.config}" if self.config else ""
            return f"hf:{self.hub_id}{config}@{self.split}"
        return str(self.path)


def _on_disk(spec: str) -> bool:
    """Whether `spec` names something on disk; False for what cannot be a path here (an unknown
    ~user, a name too long for the file system)."""
    try:
        return Path(spec).expanduser().exists()
    except (OSError, RuntimeError):
        return False


def _local_path(spec: str) -> Path:
    """`spec` with ~ expanded; InvalidCalibrationData when it cannot be (an unknown ~user)."""
    try:
        return Path(spec).expanduser()
    except RuntimeError as exc:
        raise InvalidCalibrationData(f"{spec}: cannot expand the home directory ({exc})") from exc


def default_data_dir() -> Path:
    """The shared data folder: $PARE_DATA_DIR, else ../shared/data beside the repository."""
    env = os.environ.get("PARE_DATA_DIR")
    return Path(env) if env else Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def as_source(source: DataSource | str) -> DataSource:
    return source if isinstance(source, DataSource) else DataSource.parse(source)


def file_sha256(path: str | Path) -> str | None:
    """sha256 of a file's bytes (None for directories and hub datasets)."""
    path = Path(path)
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


# ---------------------------------------------------------------- reading rows


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise InvalidCalibrationData(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise InvalidCalibrationData(
            f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})"
        ) from exc


def _delimited_rows(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """csv (standard quoting) or tsv (QUOTE_NONE: GLUE tsv files contain stray quotes).

    Rows end at \n, \r\n or \r only (the csv module's own line handling, so a quoted csv field
    keeps its newlines and a field may hold any other character). The first row is a header
    unless one of its fields is a number; headerless files get the column names "0", "1", ...
    (e.g. the original STS Benchmark: "4" is the score).
    """
    csv.field_size_limit(2**31 - 1)
    tsv = path.suffix.lower() == ".tsv"
    text = io.StringIO(_read_text(path), newline="")
    reader = csv.reader(text, delimiter="\t", quoting=csv.QUOTE_NONE) if tsv else csv.reader(text)
    try:
        table = [row for row in reader if any(cell.strip() for cell in row)]
    except csv.Error as exc:
        raise InvalidCalibrationData(f"{path}: line {reader.line_num} does not parse ({exc})") from exc
    if not table:
        return [], []
    if any(_NUMBER.match(cell) for cell in table[0]):
        width = max(len(row) for row in table)
        columns = [str(i) for i in range(width)]
    else:
        columns, table = table[0], table[1:]
    rows = [{c: (row[i] if i < len(row) else None) for i, c in enumerate(columns)} for row in table]
    return rows, columns


def _jsonl_rows(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """One JSON object per line; lines end at \n only (JSON Lines), so a string may hold U+2028."""
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(_read_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidCalibrationData(f"{path}: line {number} is not JSON ({exc.msg})") from exc
        except (ValueError, RecursionError) as exc:  # an integer over 4300 digits; nesting too deep
            raise InvalidCalibrationData(f"{path}: line {number} is not readable JSON ({exc})") from exc
        if not isinstance(row, dict):
            raise InvalidCalibrationData(f"{path}: line {number} is not a JSON object")
        rows.append(row)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    return rows, columns


def _parquet_rows(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError, ValueError) as exc:  # ArrowInvalid, ArrowIOError, ...
        raise InvalidCalibrationData(f"{path}: not a readable parquet file ({exc})") from exc
    return _arrow_checked(str(path), table, table.to_pylist), list(table.column_names)


def _arrow_checked(name: str, table: Any, to_list: Callable[[], list[Any]]) -> list[dict[str, Any]]:
    """`to_list()` of an Arrow-backed table, after validating the table in full (offsets and
    lengths inside their buffers: a corrupt file is refused, never read out of bounds); values
    Python cannot hold (a timestamp past year 9999) are refused too."""
    import pyarrow as pa

    try:
        table.validate(full=True)
        return to_list()
    except (pa.ArrowException, ValueError, OverflowError) as exc:
        raise InvalidCalibrationData(f"{name}: unreadable values ({type(exc).__name__}: {exc})") from exc


def _dataset_rows(dataset: Any, name: str, split: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows of a datasets.Dataset, or of one split of a DatasetDict."""
    from datasets import DatasetDict, IterableDatasetDict

    if isinstance(dataset, (DatasetDict, IterableDatasetDict)):
        if split not in dataset:
            raise InvalidCalibrationData(f"{name}: no split {split!r} (available: {', '.join(dataset)})")
        dataset = dataset[split]
    return _arrow_checked(name, dataset.data.table, dataset.to_list), list(dataset.column_names)


def _directory_rows(path: Path, split: str) -> tuple[list[dict[str, Any]], list[str]]:
    markers = ("dataset_info.json", "state.json", "dataset_dict.json")
    if not any((path / marker).is_file() for marker in markers):
        raise InvalidCalibrationData(f"{path}: a directory, but not one written by datasets' save_to_disk")
    from datasets import load_from_disk

    try:
        dataset = load_from_disk(str(path))
    except Exception as exc:
        raise InvalidCalibrationData(f"{path}: cannot load the saved dataset ({exc})") from exc
    return _dataset_rows(dataset, str(path), split)


def _hub_rows(source: DataSource) -> tuple[list[dict[str, Any]], list[str]]:
    from datasets import load_dataset

    name = source.describe()
    try:
        dataset = load_dataset(source.hub_id, source.config, split=source.split)
    except Exception as exc:  # offline misses, unknown configs and splits all land here
        raise InvalidCalibrationData(
            f"{name}: cannot load the hub dataset ({type(exc).__name__}: {exc}); it must already be "
            "in the datasets cache when HF_DATASETS_OFFLINE=1"
        ) from exc
    return _dataset_rows(dataset, name, source.split)


def _txt_rows(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    return [{"text": line} for line in _read_text(path).splitlines() if line.strip()], ["text"]


READERS = {
    ".txt": _txt_rows,
    ".jsonl": _jsonl_rows,
    ".csv": _delimited_rows,
    ".tsv": _delimited_rows,
    ".parquet": _parquet_rows,
}


def _read_rows(source: DataSource) -> tuple[list[dict[str, Any]], list[str]]:
    if source.hub_id:
        rows, columns = _hub_rows(source)
    elif not source.path:
        raise InvalidCalibrationData("data source names neither a path nor a hub dataset")
    else:
        path = _local_path(source.path)
        reader = READERS.get(path.suffix.lower())
        if not _on_disk(source.path):
            raise InvalidCalibrationData(f"{path}: file not found")
        if path.is_dir():
            rows, columns = _directory_rows(path, source.split)
        elif reader is None:
            raise InvalidCalibrationData(
                f"{path}: unsupported format {path.suffix or '(no suffix)'!r} "
                f"(supported: {', '.join(READERS)}, or a save_to_disk directory)"
            )
        else:
            rows, columns = reader(path)
    if not rows:
        raise InvalidCalibrationData(f"{source.describe()}: empty (no rows of data)")
    return rows, columns


def require_column(source: DataSource, columns: Sequence[str], column: str) -> str:
    """Return `column` if present, else raise naming the source and listing the available columns."""
    if column not in columns:
        raise InvalidCalibrationData(
            f"{source.describe()}: unknown column {column!r} (available: {', '.join(map(str, columns))})"
        )
    return column


def load_table(source: DataSource | str) -> tuple[list[dict[str, Any]], list[str]]:
    """(rows, column names) of a file or dataset; rows are dicts keyed by column name."""
    return _read_rows(as_source(source))


def load_records(source: DataSource | str) -> list[dict[str, Any]]:
    """All rows of a labeled file or dataset, one dict per row keyed by column name."""
    return load_table(source)[0]


def _is_text(values: list[Any]) -> bool:
    present = [v for v in values if v is not None and str(v).strip()]
    return bool(present) and all(isinstance(v, str) and not _NUMBER.match(v) for v in present)


def text_column(source: DataSource, rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    """The named column, else a conventional name (text, sentence, ...), else the first text column."""
    if source.text_column:
        return require_column(source, columns, source.text_column)
    for name in PREFERRED_TEXT_COLUMNS:
        if name in columns:
            return name
    sample = rows[:200]
    for name in columns:
        if _is_text([row.get(name) for row in sample]):
            return name
    raise InvalidCalibrationData(f"{source.describe()}: no text column (columns: {', '.join(columns)})")


def load_texts(source: DataSource | str) -> list[str]:
    """The non-blank texts of a source: .txt lines (blank lines dropped), or one column's values."""
    source = as_source(source)
    rows, columns = _read_rows(source)
    column = text_column(source, rows, columns)
    texts = [str(row[column]) for row in rows if row.get(column) is not None and str(row[column]).strip()]
    if not texts:
        raise InvalidCalibrationData(f"{source.describe()}: column {column!r} holds no text")
    return texts


def load_text(source: DataSource | str) -> str:
    """The whole text of a source, for perplexity: tokenized once, then cut into windows.

    A .txt file is returned as stored (blank lines kept: WikiText's paragraph breaks are part of
    the text the published perplexities were measured on); other sources join their texts by "\\n".
    """
    source = as_source(source)
    path = _local_path(source.path) if source.path else None
    if path is not None and path.suffix.lower() == ".txt" and _on_disk(str(path)) and path.is_file():
        text = _read_text(path)
        if not text.strip():
            raise InvalidCalibrationData(f"{path}: empty (no text)")
        return text
    return "\n".join(load_texts(source))


# ---------------------------------------------------------------- calibration batches


@dataclass
class CalibrationSet:
    """Token batches for calibration.

    batches: [{"input_ids": Long[B, T], "attention_mask": Long[B, T]}], right-padded.
    fingerprint: sha256 (hex) of the examples' token ids, independent of batch_size.
    num_tokens: non-pad tokens over all batches. mode: "chunk" or "sentences" (auto resolved).
    """

    batches: list[dict[str, torch.Tensor]]
    fingerprint: str
    num_samples: int
    num_tokens: int
    mode: str
    max_seq_length: int = 0
    seed: int = 0


def pad_id(tokenizer: Any) -> int:
    """The tokenizer's pad id, else its eos id, else 0."""
    for token_id in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if token_id is not None:
            return int(token_id)
    return 0


def _fingerprint(examples: list[list[int]]) -> str:
    sha = hashlib.sha256()
    for ids in examples:
        sha.update(struct.pack(f"<q{len(ids)}q", len(ids), *ids))
    return sha.hexdigest()


def _mean_doc_tokens(tokenizer: Any, texts: list[str], seed: int) -> float:
    """Mean tokens per document, estimated on up to 256 seeded-sampled documents."""
    import numpy as np

    rng = np.random.default_rng(seed)
    picks = rng.choice(len(texts), size=min(len(texts), 256), replace=False)
    lengths = [
        len(ids) for ids in tokenizer([texts[i] for i in picks], add_special_tokens=False)["input_ids"]
    ]
    return float(np.mean(lengths))


def _resolve_mode(mode: str, source: Any, tokenizer: Any, texts: list[str], max_len: int, seed: int) -> str:
    if mode not in CALIBRATION_MODES:
        raise InvalidSpec(f"calibration mode {mode!r} is not one of {', '.join(CALIBRATION_MODES)}")
    if mode != "auto":
        return mode
    is_txt = (
        isinstance(source, DataSource) and bool(source.path) and str(source.path).lower().endswith(".txt")
    )
    if is_txt and _mean_doc_tokens(tokenizer, texts, seed) >= max_len / 2:
        return "chunk"
    return "sentences"


def _chunk_examples(
    tokenizer: Any, texts: list[str], n: int, length: int, gen: Any, name: str
) -> list[list[int]]:
    """GPTQ-style: concatenate every text (joined by eos, or "\\n") and cut n seeded random windows."""
    import torch

    joiner = tokenizer.eos_token or "\n"
    ids = tokenizer(joiner.join(texts), add_special_tokens=False, verbose=False)["input_ids"]
    if len(ids) < length:
        raise InvalidCalibrationData(
            f"{name}: too few tokens ({len(ids)}) for one window of max_seq_length={length}"
        )
    if len(ids) < n * length:
        log.warning("%s: %d tokens < %d samples x %d: windows overlap", name, len(ids), n, length)
    starts = torch.randint(0, len(ids) - length + 1, (n,), generator=gen).tolist()
    return [ids[s : s + length] for s in starts]


def _sentence_examples(
    tokenizer: Any, texts: list[str], n: int, length: int, gen: Any, name: str
) -> list[list[int]]:
    """One document per sample, drawn without replacement, truncated, special tokens added."""
    import torch

    if len(texts) < n:
        raise InvalidCalibrationData(f"{name}: too few texts ({len(texts)}) for {n} samples")
    picks = torch.randperm(len(texts), generator=gen)[:n].tolist()
    encoded = tokenizer(
        [texts[i] for i in picks], truncation=True, max_length=length, add_special_tokens=True
    )
    return [list(ids) for ids in encoded["input_ids"]]


def pad_examples(examples: list[list[int]], pad: int, batch_size: int) -> list[dict[str, torch.Tensor]]:
    """Right-pad token lists into batches {"input_ids", "attention_mask"} of Long[B, T]."""
    import torch

    batches = []
    for start in range(0, len(examples), batch_size):
        group = examples[start : start + batch_size]
        width = max(len(ids) for ids in group)
        input_ids = torch.full((len(group), width), pad, dtype=torch.long)
        mask = torch.zeros((len(group), width), dtype=torch.long)
        for row, ids in enumerate(group):
            input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            mask[row, : len(ids)] = 1
        batches.append({"input_ids": input_ids, "attention_mask": mask})
    return batches


def build_calibration(
    tokenizer: Any,
    source: DataSource | str | Sequence[str],
    *,
    num_samples: int,
    max_seq_length: int,
    seed: int,
    mode: str = "auto",
    batch_size: int = 16,
) -> CalibrationSet:
    """Sample calibration examples and pad them into batches; deterministic for a seed.

    mode "chunk": random windows of exactly max_seq_length tokens of the concatenated texts
    (GPTQ's sampling); "sentences": one text per example; "auto": chunk for a .txt file whose mean
    document is at least max_seq_length/2 tokens, else sentences. A local torch.Generator seeded
    with `seed` draws the samples; global random state is never touched.
    `source` may also be a list of texts (for notebooks and tests).
    """
    import torch

    if num_samples < 1 or max_seq_length < 2 or batch_size < 1:
        raise InvalidSpec("num_samples and batch_size must be >= 1 and max_seq_length >= 2")
    if isinstance(source, (DataSource, str)):
        source = as_source(source)
        texts, name = load_texts(source), source.describe()
    else:
        texts, name = [t for t in source if t and t.strip()], "<texts>"
        if not texts:
            raise InvalidCalibrationData(f"{name}: empty (no non-blank text)")
    resolved = _resolve_mode(mode, source, tokenizer, texts, max_seq_length, seed)
    gen = torch.Generator().manual_seed(seed)
    sample = _chunk_examples if resolved == "chunk" else _sentence_examples
    examples = sample(tokenizer, texts, num_samples, max_seq_length, gen, name)
    batches = pad_examples(examples, pad_id(tokenizer), batch_size)
    return CalibrationSet(
        batches=batches,
        fingerprint=_fingerprint(examples),
        num_samples=len(examples),
        num_tokens=sum(len(ids) for ids in examples),
        mode=resolved,
        max_seq_length=max_seq_length,
        seed=seed,
    )

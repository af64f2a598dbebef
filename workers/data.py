"""Calibration and evaluation data: local files or Hugging Face datasets -> texts -> token batches."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DataSource:
    """Where texts come from.

    path: a local file (.txt, .jsonl, .csv, .tsv, .parquet) or a `save_to_disk` directory;
          "file.tsv:column" names the column inline.
    hub_id/config/split: a Hugging Face dataset through the `datasets` cache.
    text_column: the column to read (found automatically when None).
    """

    path: str | None = None
    hub_id: str | None = None
    config: str | None = None
    split: str = "train"
    text_column: str | None = None

"""Markdown helpers shared by the report sections: tables and number formats."""

from __future__ import annotations

import math
from typing import Any

from bench.settings import METHOD_LABELS


def table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join("" if c is None else str(c) for c in row) + " |" for row in rows]
    return lines + [""]


def fmt(value: Any, metric: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if metric == "perplexity":
        return f"{value:.2f}"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def secs(value: Any) -> str:
    return "-" if value is None else f"{value:.1f}"


def label(method: str) -> str:
    return METHOD_LABELS.get(method, method)

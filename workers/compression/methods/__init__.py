"""Compression methods, chosen by name. Adding a method is one module and one line here."""

from __future__ import annotations

from workers.compression.methods.base import Method, MethodParams
from workers.compression.methods.id import InterpolativeMethod
from workers.compression.methods.magnitude import MagnitudeMethod
from workers.compression.methods.svd import SVDMethod
from workers.errors import InvalidSpec

METHODS: dict[str, type[Method]] = {
    "id": InterpolativeMethod,
    "svd": SVDMethod,
    "magnitude": MagnitudeMethod,
}


def get_method(name: str) -> type[Method]:
    try:
        return METHODS[name]
    except KeyError:
        raise InvalidSpec(f"unknown method {name!r}; available: {', '.join(METHODS)}", field="method") from None


__all__ = ["METHODS", "Method", "MethodParams", "get_method"]

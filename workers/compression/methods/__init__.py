"""Compression methods, looked up by name in the catalogue (`core.methods`).

The catalogue names each method's implementation as "module:Class"; it is imported here, on
first use, so the API (which reads the same catalogue) never imports torch.
"""

from __future__ import annotations

import importlib

from core import methods as catalogue
from core.errors import InvalidSpec
from core.methods import MethodParams
from workers.compression.methods.base import Method


def get_method(name: str) -> type[Method]:
    """The `Method` subclass registered under `name` (InvalidSpec for an unknown name)."""
    implementation = catalogue.get(name).implementation
    if isinstance(implementation, str):
        module_name, _, attr = implementation.partition(":")
        implementation = getattr(importlib.import_module(module_name), attr)
    if not (isinstance(implementation, type) and issubclass(implementation, Method)):
        raise InvalidSpec(f"method {name!r} is registered with an implementation that is not a Method")
    return implementation


__all__ = ["Method", "MethodParams", "get_method"]

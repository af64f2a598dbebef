"""Option types shared by the commands: method names from the catalogue, checked before any work."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from core import methods as catalogue


class MethodChoice(click.Choice[str]):
    """`click.Choice` over the method catalogue, read when the command runs (a method registered
    after import, e.g. by a test, is offered too)."""

    def __init__(self) -> None:
        super().__init__((), case_sensitive=True)

    @property  # type: ignore[override]
    def choices(self) -> Sequence[str]:
        return catalogue.names()

    @choices.setter
    def choices(self, _value: Any) -> None:  # click's __init__ assigns; the catalogue is the truth
        pass


MAC_TARGET = click.FloatRange(0.0, 1.0, min_open=True)
POSITIVE = click.IntRange(min=1)

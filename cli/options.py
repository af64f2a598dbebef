"""Option types shared by the commands: method names from the catalogue, checked before any work."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from core import methods as catalogue
from core import targets
from core.errors import InvalidSpec


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


POSITIVE = click.IntRange(min=1)


class MacTargets(click.ParamType):
    """One MAC ratio or a comma-separated sweep (0.9,0.8,0.7), each in (0, 1]."""

    name = "ratio[,ratio...]"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[float, ...]:
        if isinstance(value, tuple):
            return value
        ratios = []
        for part in str(value).split(","):
            try:
                ratio = float(part)
            except ValueError:
                self.fail(f"{part.strip()!r} is not a number", param, ctx)
            if not 0.0 < ratio <= 1.0:
                self.fail(f"{ratio} is not in (0, 1]", param, ctx)
            ratios.append(ratio)
        return tuple(ratios)


MAC_TARGETS = MacTargets()


def target_options(command: Any) -> Any:
    """--max-drop / --max-ratio with --metric: a quality target instead of MAC ratios."""
    for option in reversed(
        [
            click.option(
                "--max-drop",
                type=click.FloatRange(min=0.0),
                default=None,
                help="Smallest model losing at most this much of --metric (absolute).",
            ),
            click.option(
                "--max-ratio",
                type=click.FloatRange(min=1.0),
                default=None,
                help="Smallest model within this ratio worse/dense of --metric (perplexity 1.1).",
            ),
            click.option(
                "--metric",
                type=click.Choice(sorted(targets.METRIC_TASKS)),
                default=None,
                help="The metric a --max-drop or --max-ratio bounds (measured by its evaluation task).",
            ),
        ]
    ):
        command = option(command)
    return command


def target_object(
    ratios: tuple[float, ...] | None,
    max_drop: float | None,
    max_ratio: float | None,
    metric: str | None,
    *,
    ratio_flag: str,
) -> dict[str, Any]:
    """The job's `target` from the command line (checked by core.targets.parse)."""
    if ratios and (max_drop is not None or max_ratio is not None):
        raise click.UsageError(f"give {ratio_flag} or a quality target (--max-drop/--max-ratio), not both")
    if ratios:
        target: dict[str, Any] = (
            {"mac_ratio": ratios[0]} if len(ratios) == 1 else {"mac_ratios": list(ratios)}
        )
    elif max_drop is not None or max_ratio is not None:
        if metric is None:
            raise click.UsageError("--max-drop and --max-ratio need --metric")
        target = {"metric": metric} | (
            {"max_drop": max_drop} if max_drop is not None else {"max_ratio": max_ratio}
        )
    else:
        raise click.UsageError(
            f"give {ratio_flag} (one ratio or a comma-separated sweep), or --max-drop/--max-ratio"
        )
    try:
        targets.parse(target)
    except InvalidSpec as exc:
        raise click.UsageError(str(exc)) from exc
    return target

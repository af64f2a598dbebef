"""`pare` commands: models (placeholder until its module lands)."""

import click

COMMANDS: list[click.Command] = []

"""The `pare` command line: one click group, commands contributed by cli.commands.*.

Command modules import torch lazily (inside the command body) so `pare serve` and the
client commands start fast and never touch CUDA before a worker forks.
"""

from __future__ import annotations

import logging

import click

from cli.commands import compress, evaluate, models, service


@click.group()
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
def main(verbose: int) -> None:
    """Pare: retraining-free compression of transformer models under a MAC budget."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


for module in (compress, evaluate, models, service):
    for command in module.COMMANDS:
        main.add_command(command)


if __name__ == "__main__":
    main()

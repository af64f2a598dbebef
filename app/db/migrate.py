"""Run Alembic programmatically (`pare db upgrade`, `pare serve` at startup, the tests)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

REPO_ROOT = Path(__file__).resolve().parents[2]


def alembic_config(database_url: str) -> Config:
    """An Alembic config for `database_url`, independent of the working directory."""
    config = Config(str(REPO_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(REPO_ROOT / "migrations"))
    config.attributes["database_url"] = database_url
    config.attributes["configure_logger"] = False
    return config


def upgrade(*, database_url: str, revision: str = "head") -> None:
    """Bring the schema of `database_url` up to `revision`."""
    command.upgrade(alembic_config(database_url), revision)


def downgrade(*, database_url: str, revision: str = "base") -> None:
    """Take the schema of `database_url` down to `revision`."""
    command.downgrade(alembic_config(database_url), revision)

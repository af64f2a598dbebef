"""Migrations: empty → head → base → head on Postgres (and SQLite), with no autogenerate diff."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from app.db.engine import get_engine
from app.db.migrate import downgrade, upgrade
from app.db.models import Base

TABLES = {
    "tenants",
    "api_keys",
    "jobs",
    "job_events",
    "evaluation_results",
    "artifacts",
    "datasets",
    "idempotency_keys",
    "alembic_version",
}


def _round_trip(url: str) -> None:
    upgrade(database_url=url)
    assert set(inspect(get_engine(url)).get_table_names()) == TABLES
    downgrade(database_url=url)
    assert set(inspect(get_engine(url)).get_table_names()) <= {"alembic_version"}
    upgrade(database_url=url)
    with get_engine(url).connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []


def test_postgres_round_trip(fresh_database) -> None:  # type: ignore[no-untyped-def]
    _round_trip(fresh_database())


@pytest.mark.parametrize("name", ["embedded.db"])
def test_sqlite_round_trip(tmp_path: Path, name: str) -> None:
    _round_trip(f"sqlite:///{tmp_path / name}")

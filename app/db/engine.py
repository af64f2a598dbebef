"""Engine and session factories, created lazily per process (never at import: forked workers)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

_lock = threading.Lock()
_engines: dict[tuple[int, str], Engine] = {}


# Execution option marking a transaction that only reads (GET requests): on SQLite it begins DEFERRED,
# so readers never take the write lock and run beside each other and beside a writer (WAL).
READ_ONLY = "pare_read_only"
# Connections kept per process: above the API's database threads (app.api.deps.Database, 8, each
# holding at most two sessions at once) plus the embedded worker and the reaper.
POOL_SIZE, MAX_OVERFLOW = 20, 30


def _private_file(path: Path) -> None:
    """Create the database file readable by its owner only (0600: it holds webhook secrets and key
    hashes), and tighten an existing one; SQLite gives its -wal and -shm files the same mode."""
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700)
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    os.chmod(path, 0o600)
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            os.chmod(side, 0o600)


def _sqlite_engine(url: str) -> Engine:
    """SQLite for the embedded mode: WAL, a busy timeout, and BEGIN IMMEDIATE so writers queue up
    (a DEFERRED writer that upgrades its lock gets SQLITE_BUSY at once instead of waiting);
    read-only transactions begin DEFERRED."""
    database = make_url(url).database
    if database and database != ":memory:" and not database.startswith("file:"):
        _private_file(Path(database))
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 30},
        pool_size=POOL_SIZE,
        max_overflow=MAX_OVERFLOW,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        read_only = connection.get_execution_options().get(READ_ONLY, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


def get_engine(url: str) -> Engine:
    """The engine for `url` in this process (a forked child gets its own)."""
    key = (os.getpid(), url)
    with _lock:
        engine = _engines.get(key)
        if engine is None:
            if url.startswith("sqlite"):
                engine = _sqlite_engine(url)
            else:
                engine = create_engine(
                    url, pool_pre_ping=True, pool_size=POOL_SIZE, max_overflow=MAX_OVERFLOW
                )
            _engines[key] = engine
        return engine


def session_factory(url: str, *, read_only: bool = False) -> sessionmaker[Session]:
    """A sessionmaker bound to this process's engine for `url`; `read_only` sessions only read
    (same pool; SQLite: BEGIN DEFERRED; Postgres: autocommit)."""
    engine = get_engine(url)
    if read_only:
        options: dict[str, Any] = {READ_ONLY: True}
        if engine.dialect.name != "sqlite":
            # No BEGIN/ROLLBACK round trips: under READ COMMITTED every statement reads its own
            # snapshot anyway, inside a transaction or not.
            options["isolation_level"] = "AUTOCOMMIT"
        engine = engine.execution_options(**options)
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """One transaction: commit on success, roll back on error."""
    with session_factory(url)() as session, session.begin():
        yield session


def dispose_engines() -> None:
    """Close every pooled connection of this process (tests, shutdown)."""
    with _lock:
        for (pid, _url), engine in list(_engines.items()):
            if pid == os.getpid():
                engine.dispose()
        _engines.clear()

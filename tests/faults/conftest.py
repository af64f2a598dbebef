"""Fault-test fixtures: a redis-server and a Postgres cluster of this package's own (stopped and
restarted for real by the tests), `pare serve` in API mode on them, and `pare worker` subprocesses.
All of it is package-scoped: torn down when the last test of tests/faults has run, passed or failed.

Settings that make faults show up within seconds instead of minutes: the API's reaper runs every
second and re-publishes jobs queued for 10 s without a claim; workers heartbeat every second.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import factories
from tests.factories import make_key
from tests.faults.servers import PostgresCluster, RedisServer
from tests.service import helpers

WORKER = [*helpers.PARE, "worker", "--pool", "solo", "--loglevel", "INFO"]


@pytest.fixture(scope="package")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("faults")


@pytest.fixture(scope="package")
def redis_server(root: Path) -> Iterator[RedisServer]:
    (root / "redis").mkdir()
    server = RedisServer(root / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="package")
def postgres() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster()
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        from app.db.engine import dispose_engines

        dispose_engines()
        cluster.destroy()


@pytest.fixture(autouse=True)
def servers_up(redis_server: RedisServer, postgres: PostgresCluster) -> Iterator[None]:
    """Each test starts and ends with both servers running (a failed test may have left one down)."""
    yield
    if not postgres.running():
        postgres.start()
    if redis_server.proc is None or redis_server.proc.poll() is not None:
        redis_server.start()


@pytest.fixture(scope="package")
def hf_home(root: Path) -> Path:
    """A temporary HF cache holding the tiny BERT under its hub id."""
    from workers.models import place_in_cache

    home = root / "hf"
    tiny = factories.make_tiny_bert(root / "src" / "tiny-bert")
    place_in_cache(tiny, factories.TINY_BERT, hf_home=home)
    return home


@pytest.fixture(scope="package")
def env(
    postgres: PostgresCluster, redis_server: RedisServer, root: Path, hf_home: Path
) -> Iterator[dict[str, str]]:
    """Environment of the API and worker subprocesses (and of in-process Settings)."""
    from app.db.migrate import upgrade

    url = postgres.create_database(f"pare_faults_{secrets.token_hex(4)}")
    upgrade(database_url=url)
    values = {
        "PARE_DATABASE_URL": url,
        "PARE_BROKER_URL": redis_server.url,
        "PARE_QUEUE": "faults",
        "PARE_STORAGE_URL": str(root / "storage"),
        "PARE_WORK_DIR": str(root / "work"),
        "PARE_MAX_ATTEMPTS": "10",  # the storm may kill one job's run several times
        "PARE_REAPER_INTERVAL_SECONDS": "1",
        "PARE_REPUBLISH_AFTER_SECONDS": "10",
        "PARE_HEARTBEAT_SECONDS": "1",
        "PARE_LEASE_SECONDS": "30",
        "PARE_EVENT_INTERVAL_SECONDS": "0.2",
        "PARE_DEVICE": "cpu",
        "HF_HOME": str(hf_home),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(helpers.REPO), os.environ.get("PYTHONPATH")])),
    }
    saved = {k: os.environ.get(k) for k in ("HF_HOME", "HF_HUB_OFFLINE")}
    os.environ.update({k: values[k] for k in saved})
    yield {**os.environ, **values}
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="package")
def settings(env: dict[str, str]):  # type: ignore[no-untyped-def]
    from app.settings import Settings

    keys: dict[str, Any] = {k[len("PARE_") :].lower(): v for k, v in env.items() if k.startswith("PARE_")}
    return Settings(**keys)


@pytest.fixture(scope="package")
def api_log(root: Path) -> Path:
    return root / "api.log"


@pytest.fixture(scope="package")
def api_url(env: dict[str, str], root: Path, api_log: Path) -> Iterator[str]:
    """`pare serve` in API mode on this session's Postgres and Redis, its reaper every second."""
    port = helpers.free_port()
    proc = helpers.start(
        [*helpers.PARE, "serve", "--port", str(port), "--no-migrate", "--log-level", "warning"],
        env=env,
        cwd=root,
        log=api_log,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        helpers.wait_http(f"{url}/healthz", proc, api_log)
        yield url
    finally:
        helpers.stop(proc)


@pytest.fixture()
def client(api_url: str, settings) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    key = make_key(settings, f"faults-{secrets.token_hex(3)}")
    with httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as c:
        yield c


@pytest.fixture()
def dataset_id(client: httpx.Client) -> str:
    return factories.upload_dataset(client, factories.calibration_lines().encode(), "calib.jsonl")


class Workers:
    """`pare worker --pool solo` subprocesses on the faults queue, each in its own process group."""

    def __init__(self, env: dict[str, str], root: Path, logs: Path) -> None:
        self.env, self.root, self.log_dir = env, root, logs
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: dict[int, Path] = {}

    def start(self, *, wait: bool = True, command: list[str] = WORKER, **env: str) -> subprocess.Popen[bytes]:
        """Start one more worker (PARE_* overrides as keywords); by default wait until it is ready."""
        log = self.log_dir / f"worker-{len(self.procs) + 1}.log"
        proc = helpers.start(command, env=self.env | env, cwd=self.root, log=log)
        self.procs.append(proc)
        self.logs[proc.pid] = log
        if wait:
            self.wait_ready(proc)
        return proc

    def wait_ready(self, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
        log = self.logs[proc.pid]
        helpers.wait_for(lambda: b" ready." in log.read_bytes() or proc.poll() is not None, timeout=timeout)
        assert proc.poll() is None, log.read_text()[-4000:]

    def alive(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in self.procs if p.poll() is None]

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL the worker (its whole process group) and reap it."""
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=15)

    def count_in_logs(self, text: bytes) -> int:
        """How many times `text` occurs in all of these workers' logs."""
        return sum(p.read_bytes().count(text) for p in self.logs.values() if p.exists())

    def log_text(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in self.logs.values() if p.exists())

    def stop_all(self) -> None:
        """SIGTERM every live worker at once (a warm shutdown takes seconds), then reap them all."""
        alive = self.alive()
        for proc in alive:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in alive:
            helpers.stop(proc)


@pytest.fixture()
def workers(env: dict[str, str], root: Path, tmp_path: Path) -> Iterator[Workers]:
    """A test's workers (logs in its tmp_path); all of them are stopped when it ends, passed or failed."""
    pool = Workers(env, root, tmp_path)
    try:
        yield pool
    finally:
        pool.stop_all()

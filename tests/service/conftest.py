"""Service test fixtures: a fresh Postgres database per session, real Redis, subprocess API and worker.

Every session creates pare_test_<random> (dropped at the end), an isolated Redis key prefix and
queue, a temporary HF cache with tiny models, and runs `pare serve` (API mode) as a subprocess.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from tests import factories
from tests.factories import make_key
from tests.service import helpers
from tests.service.helpers import PG_ADMIN, REDIS_URL


def _create_db(name: str) -> str:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    return f"{base}/{name}"


def _drop_db(name: str) -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def fresh_database() -> Iterator[callable]:  # type: ignore[valid-type]
    """A factory of fresh, empty Postgres databases, all dropped at the end of the session."""
    created: list[str] = []

    def make() -> str:
        name = f"pare_test_{secrets.token_hex(4)}"
        url = _create_db(name)
        created.append(name)
        return url

    yield make
    from app.db.engine import dispose_engines

    dispose_engines()
    for name in created:
        _drop_db(name)


@pytest.fixture(scope="session")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("service")


@pytest.fixture(scope="session")
def hf_home(root: Path) -> Path:
    """A temporary HF cache holding the tiny test models under hub ids."""
    from workers.models import place_in_cache

    home = root / "hf"
    tiny = factories.make_tiny_bert(root / "src" / "tiny-bert")
    auto, pkl = factories.make_bad_models(root / "src", tiny, root / "SENTINEL")
    place_in_cache(tiny, factories.TINY_BERT, hf_home=home)
    place_in_cache(auto, factories.AUTO_MAP, hf_home=home)
    place_in_cache(pkl, factories.PICKLE_ONLY, hf_home=home)
    return home


@pytest.fixture(scope="session")
def env(fresh_database, root: Path, hf_home: Path) -> Iterator[dict[str, str]]:  # type: ignore[no-untyped-def]
    """Environment of the API and worker subprocesses (and of in-process Settings and hub look-ups)."""
    from app.db.migrate import upgrade

    url = fresh_database()
    upgrade(database_url=url)
    tag = secrets.token_hex(4)
    values = {
        "PARE_DATABASE_URL": url,
        "PARE_BROKER_URL": REDIS_URL,
        "PARE_BROKER_KEY_PREFIX": f"pare_test_{tag}:",
        "PARE_QUEUE": f"pare_test_{tag}",
        "PARE_STORAGE_URL": str(root / "storage"),
        "PARE_WORK_DIR": str(root / "work"),
        "PARE_MAX_UPLOAD_BYTES": str(1024 * 1024),
        "PARE_REAPER_INTERVAL_SECONDS": "0",
        "PARE_HEARTBEAT_SECONDS": "1",
        "PARE_LEASE_SECONDS": "30",
        "PARE_EVENT_INTERVAL_SECONDS": "0.2",
        "PARE_DEVICE": "cpu",
        "PARE_WEBHOOK_ALLOW_NETWORKS": '["127.0.0.0/8"]',  # the tests' receivers listen on loopback
        "HF_HOME": str(hf_home),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(helpers.REPO), os.environ.get("PYTHONPATH")])),
    }
    saved = {k: os.environ.get(k) for k in ("HF_HOME", "HF_HUB_OFFLINE")}
    os.environ.update({k: values[k] for k in saved})  # in-process hub look-ups read these at call time
    yield {**os.environ, **values}
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(match=f"{values['PARE_BROKER_KEY_PREFIX']}*"):
        client.delete(key)  # this session's queues and bookkeeping only


@pytest.fixture(scope="session")
def settings(env: dict[str, str]):  # type: ignore[no-untyped-def]
    from app.settings import Settings

    keys: dict[str, object] = {k[len("PARE_") :].lower(): v for k, v in env.items() if k.startswith("PARE_")}
    keys["webhook_allow_networks"] = json.loads(env["PARE_WEBHOOK_ALLOW_NETWORKS"])
    return Settings(**keys)


@pytest.fixture(scope="session")
def api_url(env: dict[str, str], root: Path) -> Iterator[str]:
    """`pare serve` in API mode (Postgres + Redis) as a subprocess."""
    port = helpers.free_port()
    log = root / "api.log"
    proc = helpers.start(
        [*helpers.PARE, "serve", "--port", str(port), "--no-migrate", "--log-level", "warning"],
        env=env,
        cwd=root,
        log=log,
    )
    url = f"http://127.0.0.1:{port}"
    helpers.wait_http(f"{url}/healthz", proc, log)
    yield url
    helpers.stop(proc)


@pytest.fixture(scope="session")
def worker(env: dict[str, str], root: Path) -> Iterator[None]:
    """`pare worker --pool solo` consuming this session's queue."""
    log = root / "worker.log"
    proc = helpers.start(
        [*helpers.PARE, "worker", "--pool", "solo", "--loglevel", "INFO"], env=env, cwd=root, log=log
    )
    helpers.wait_for(lambda: b"ready" in log.read_bytes() or proc.poll() is not None, timeout=60)
    assert proc.poll() is None, log.read_text()[-4000:]
    yield
    helpers.stop(proc)


@pytest.fixture(scope="session")
def key_a(settings) -> str:  # type: ignore[no-untyped-def]
    return make_key(settings, f"tenant-a-{secrets.token_hex(3)}")


@pytest.fixture(scope="session")
def key_b(settings) -> str:  # type: ignore[no-untyped-def]
    return make_key(settings, f"tenant-b-{secrets.token_hex(3)}")


@pytest.fixture()
def client_a(api_url: str, key_a: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {key_a}"}, timeout=30) as client:
        yield client


@pytest.fixture()
def client_b(api_url: str, key_b: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {key_b}"}, timeout=30) as client:
        yield client


@pytest.fixture()
def dataset_id(client_a: httpx.Client) -> str:
    return factories.upload_dataset(client_a, factories.calibration_lines().encode(), "calib.jsonl")

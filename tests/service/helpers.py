"""Machinery for the service tests: servers to talk to, free ports, subprocesses, waiting, job rows,
problem responses, a fake clock. Test data (models, datasets, job requests) lives in tests/factories.py."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
PARE = [sys.executable, "-c", "from cli.main import main; main()"]
PG_ADMIN = os.environ.get("PARE_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("PARE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PROBLEM = "application/problem+json"


class FakeClock:
    """A monotonic clock that moves only when told to (TtlCache's `clock` in the cache tests)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def embedded_env(hf_home: Path) -> dict[str, str]:
    """The environment of an embedded `pare serve` (SQLite, in-process worker) on the test models:
    this process's without its PARE_* settings, the tiny models' HF cache, a quick heartbeat."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARE_")}
    return env | {
        "HF_HOME": str(hf_home),
        "HF_HUB_OFFLINE": "1",
        "PARE_DEVICE": "cpu",
        "OMP_NUM_THREADS": "1",
        "PARE_HEARTBEAT_SECONDS": "1",
        "PARE_EVENT_INTERVAL_SECONDS": "0.2",
        "PYTHONPATH": str(REPO),
    }


def pare_cli(args: list[str], *, cwd: Path, env: dict[str, str], timeout: float = 300) -> str:
    """`pare ARGS` as a subprocess; its stdout, after asserting it exited 0."""
    result = subprocess.run([*PARE, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(cmd: list[str], *, env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    fh = log.open("ab")
    return subprocess.Popen(
        cmd, env=env, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
    )


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not up after {timeout}s:\n{log.read_text()[-4000:]}")


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """Stop a process we started (its own session) and wait for it."""
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def wait_for(predicate, timeout: float = 60, interval: float = 0.2):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


class TcpProxy:
    """A loopback TCP proxy to a real server that can be started late and stopped (an outage)."""

    def __init__(self, port: int, target: tuple[str, int]) -> None:
        self.port, self.target = port, target
        self._server: socket.socket | None = None
        self._conns: list[socket.socket] = []

    def start(self) -> None:
        import threading

        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(16)
        self._server = server
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import threading

        while self._server is not None:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass

    def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for conn in self._conns:
            try:
                conn.close()
            except OSError:
                pass
        self._conns.clear()


def assert_problem(response: httpx.Response, status: int, field: str | None = None) -> dict:  # type: ignore[type-arg]
    """An RFC 9457 problem response with this status (and this `field`, when given); returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert {"type", "title", "status", "detail"} <= body.keys() and body["status"] == status
    if field is not None:
        assert body.get("field") == field, body
    return body


def job_row(settings, job_id: str):  # type: ignore[no-untyped-def]
    """The job's row as the database has it now."""
    from app.db.engine import session_scope
    from app.db.models import Job

    with session_scope(settings.database_url) as session:
        return session.get(Job, job_id)


def expire_lease(settings, job_id: str) -> None:  # type: ignore[no-untyped-def]
    """Move the job's lease a second into the past, as if its run stopped heartbeating long ago."""
    from datetime import timedelta

    from sqlalchemy import update

    from app.db.engine import session_scope
    from app.db.models import Job, utcnow

    with session_scope(settings.database_url) as session:
        session.execute(
            update(Job).where(Job.id == job_id).values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )

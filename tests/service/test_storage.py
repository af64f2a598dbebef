"""Storage: atomic writes (even when the writer is killed), checksums verified on read, S3 on moto."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from app.settings import Settings
from app.storage import CorruptObject, LocalStorage, MissingObject, make_storage
from tests.reliability import record
from tests.service import helpers


def test_local_put_is_atomic_and_verified(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store")
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(100_000))
    stored = storage.put_file("jobs/j/1/model.safetensors", src)
    assert stored.sha256 == hashlib.sha256(src.read_bytes()).hexdigest() and stored.size_bytes == 100_000
    assert [p.name for p in (tmp_path / "store/jobs/j/1").iterdir()] == ["model.safetensors"]  # no temp left
    with storage.open_verified(stored.key, stored.sha256) as path:
        assert path.read_bytes() == src.read_bytes()
    with pytest.raises(CorruptObject):
        storage.local_copy(stored.key, "0" * 64)
    with pytest.raises(MissingObject):
        storage.local_copy("jobs/j/1/absent", stored.sha256)
    for bad in ("../escape", "/abs", "a/../../b", ""):
        with pytest.raises(ValueError):
            storage.put_file(bad, src)


WRITER = """
import sys
from pathlib import Path
from app.storage import LocalStorage
LocalStorage(Path(sys.argv[1])).put_file("obj.bin", Path(sys.argv[2]))
print("done", flush=True)
"""


def _writer(store: Path, src: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(store), str(src)], cwd=helpers.REPO, stdout=subprocess.PIPE
    )


def _temps(store: Path) -> list[Path]:
    return sorted(store.glob(".obj.bin.*"))


def test_killed_writer_leaves_nothing_or_everything(tmp_path: Path) -> None:
    """The writer reads its source from a FIFO, so the test decides where it stops: it is killed
    with part of the object written to its temporary file (seen on disk), every time."""
    from app.storage import CHUNK

    store = tmp_path / "store"
    old = os.urandom(CHUNK)
    new = os.urandom(6 * CHUNK)
    kills = intact = 0
    for previous in (None, old):  # no object yet, then an older version to keep intact
        if previous is not None:
            store.mkdir(exist_ok=True)
            (store / "obj.bin").write_bytes(previous)
        fifo = tmp_path / f"src-{previous is None}.fifo"
        os.mkfifo(fifo)
        proc = _writer(store, fifo)
        try:
            with fifo.open("wb") as feed:
                feed.write(new[: 3 * CHUNK])  # half the object; the writer then blocks on the FIFO
                feed.flush()
                torn = helpers.wait_for(
                    lambda: [t for t in _temps(store) if t.stat().st_size >= 2 * CHUNK],
                    timeout=30,
                    interval=0.01,
                )
                proc.send_signal(signal.SIGKILL)  # mid-copy: the FIFO is still open, no EOF yet
                assert proc.wait(timeout=10) == -signal.SIGKILL
                kills += 1
        except BrokenPipeError:
            pass
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert 0 < torn[0].stat().st_size < len(new)  # the kill landed mid-write
        if previous is None:
            assert not (store / "obj.bin").exists()  # nothing under the final name
        else:
            assert (store / "obj.bin").read_bytes() == previous  # the old version, whole
        assert [p.name for p in store.iterdir() if not p.name.startswith(".obj.bin.")] == (
            [] if previous is None else ["obj.bin"]
        )
        intact += 1  # final name absent, or the previous version whole
        for leftover in _temps(store):
            leftover.unlink()  # torn temp files never carry the final name

    # the same writer given the whole source replaces the object with all of it, and no temp is left
    src = tmp_path / "src.bin"
    src.write_bytes(new)
    proc = _writer(store, src)
    assert proc.communicate(timeout=60)[0].strip() == b"done" and proc.returncode == 0
    assert hashlib.sha256((store / "obj.bin").read_bytes()).hexdigest() == hashlib.sha256(new).hexdigest()
    assert _temps(store) == []
    record("torn artifact",
           test="tests/service/test_storage.py::test_killed_writer_leaves_nothing_or_everything",
           faults_injected=kills, final_name_intact_after_kill=intact,
           complete_sha256_matches=int(hashlib.sha256((store / "obj.bin").read_bytes()).digest()
                                       == hashlib.sha256(new).digest()),
           temps_left=len(_temps(store)))


def test_s3_storage_on_moto(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    boto3 = pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer

    port = helpers.free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        endpoint = f"http://127.0.0.1:{port}"
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="pare")
        settings = Settings(storage_url="s3://pare/prefix", s3_endpoint_url=endpoint)
        storage = make_storage(settings)
        src = tmp_path / "model.safetensors"
        src.write_bytes(os.urandom(6 * 1024 * 1024))  # above the multipart threshold
        stored = storage.put_file("jobs/j/1/model.safetensors", src)
        path, cleanup = storage.local_copy(stored.key, stored.sha256)
        assert path.read_bytes() == src.read_bytes()
        cleanup()
        assert not path.exists()
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        head = client.head_object(Bucket="pare", Key="prefix/jobs/j/1/model.safetensors")
        assert head["Metadata"]["sha256"] == stored.sha256
        client.put_object(Bucket="pare", Key="prefix/jobs/j/1/model.safetensors", Body=b"tampered")
        with pytest.raises(CorruptObject):
            storage.local_copy(stored.key, stored.sha256)
        with pytest.raises(MissingObject):
            storage.local_copy("jobs/j/1/nothing", stored.sha256)
        storage.delete(stored.key)
    finally:
        server.stop()

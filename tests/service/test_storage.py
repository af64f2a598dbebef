"""Storage: atomic writes (even when the writer is killed), checksums verified on read, S3 on moto."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.settings import Settings
from app.storage import CorruptObject, LocalStorage, MissingObject, make_storage
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


def test_killed_writer_leaves_nothing_or_everything(tmp_path: Path) -> None:
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(24 * 1024 * 1024))
    expected = hashlib.sha256(src.read_bytes()).hexdigest()
    store = tmp_path / "store"
    for i in range(5):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(store), str(src)], cwd=helpers.REPO)
        time.sleep(0.3 + 0.15 * i)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        target = store / "obj.bin"
        if target.exists():
            assert hashlib.sha256(target.read_bytes()).hexdigest() == expected
        for leftover in store.glob(".obj.bin.*"):
            leftover.unlink()  # torn temp files never carry the final name


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

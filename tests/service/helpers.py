"""Helpers for the service tests: tiny models in a temp HF cache, free ports, subprocess servers."""

from __future__ import annotations

import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
PARE = [sys.executable, "-c", "from cli.main import main; main()"]
TINY_BERT = "pare-test/tiny-bert"
AUTO_MAP = "pare-test/auto-map"
PICKLE_ONLY = "pare-test/pickle-only"
WORDS = (
    "the a is of and to in model data text compression layer head neuron rank budget small fast slow "
    "good bad token sentence word cat dog runs jumps over under river mountain city light dark"
).split()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_tiny_bert(dest: Path) -> Path:
    """A random 2-layer BERT (hidden 32, 4 heads) with a word-level vocab, saved as safetensors."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    dest.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *"abcdefghijklmnopqrstuvwxyz"]
    (dest / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(dest / "vocab.txt")).save_pretrained(dest)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(dest)
    return dest


class _Sentinel:
    """Unpickling this creates a file: proof that a pickle was opened."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.path, "w"))


def make_bad_models(root: Path, tiny: Path, sentinel: Path) -> tuple[Path, Path]:
    """A copy of tiny with auto_map in its config, and a folder with only a booby-trapped pickle."""
    auto = root / "auto-map"
    auto.mkdir(parents=True, exist_ok=True)
    config = json.loads((tiny / "config.json").read_text())
    (auto / "config.json").write_text(json.dumps(config | {"auto_map": {"AutoModel": "evil.EvilModel"}}))
    (auto / "model.safetensors").write_bytes((tiny / "model.safetensors").read_bytes())
    pkl = root / "pickle-only"
    pkl.mkdir(parents=True, exist_ok=True)
    (pkl / "config.json").write_text(json.dumps(config))
    with (pkl / "pytorch_model.bin").open("wb") as fh:
        pickle.dump(_Sentinel(str(sentinel)), fh)
    return auto, pkl


def calibration_lines(n: int = 64) -> str:
    lines = []
    for i in range(n):
        words = [WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(6 + i % 5)]
        lines.append(json.dumps({"text": " ".join(words)}))
    return "\n".join(lines) + "\n"


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

"""Issue 4's API load bar: 200 concurrent GET /v1/jobs/{id} against a running service, no errors,
p99 under 100 ms. Writes bench/results/api_load.json.

    python -m bench.api_load [--rounds 5] [--concurrency 200] [--wrk-seconds 10] [--no-wrk]

What it does, all on loopback (127.0.0.1) and bounded in count and time:
1. builds a tiny random Llama in a temporary HF cache under a hub id, starts `pare serve` in a temporary
   directory (embedded mode: SQLite, local storage, in-process worker, auth on, default settings) on a
   free port, uploads a small text file and runs one job to `succeeded` (results with metrics,
   protocols and timings: a realistic response body);
2. 50 sequential GETs (the service time of one request, nothing queued);
3. tool 1, httpx: one warm-up burst (opens the connections; reported apart), then `--rounds` bursts of
   `--concurrency` GETs issued at once with asyncio.gather on an httpx.AsyncClient whose pool holds
   that many connections, so every request of a burst is in flight together; latency per request is
   client-side wall time from the call to the read body; the server's own Prometheus histogram
   (pare_http_request_duration_seconds, time to the response start inside the app) is read before
   and after, to split server time from client time;
4. tool 2, wrk (if installed): `wrk -t2 -c{concurrency} -d{wrk-seconds}s` with the Bearer key: a closed
   loop of that many connections for that long, latency percentiles from wrk's own histogram.
The server is stopped at the end (its process group, SIGTERM then SIGKILL).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import write_result  # noqa: E402

MODEL_ID = "pare-bench/tiny-llama"
BAR_P99_MS = 100.0
CORPUS = (
    "the quick brown fox jumps over the lazy dog . a man is playing a guitar on the street . "
    "it was the best of times , it was the worst of times . stocks fell sharply today as markets "
    "reacted to the news . hello world , this is a test of the tiny tokenizer ."
).split()
ROUTE = "/v1/jobs/{job_id}"
CLIENT_TIMEOUT_S = 60.0  # above the server's own 30 s limits (SQLite busy timeout, pool timeout)


# ----------------------------------------------------------------------------- setup


def _text(n_lines: int) -> str:
    lines = []
    for i in range(n_lines):
        lines.append(" ".join(CORPUS[(i * 5 + j * 7) % len(CORPUS)] for j in range(8 + i % 6)))
    return "\n".join(lines) + "\n"


def make_tiny_llama(dest: Path) -> Path:
    """A random 2-layer Llama (hidden 32) with a 300-token byte-level BPE tokenizer."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<eos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([_text(20)] * 4, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    return dest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """`pare serve` (embedded) in its own process group, in a directory of its own."""

    def __init__(self, root: Path, hf_home: Path, name: str = "setup") -> None:
        self.cwd = root / "serve"  # the same database and artifacts for every start
        self.cwd.mkdir(parents=True, exist_ok=True)
        self.log = root / f"serve-{name}.log"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PARE_")}
        env |= {
            "HF_HOME": str(hf_home),
            "HF_HUB_OFFLINE": "1",
            "PARE_DEVICE": "cpu",
            "OMP_NUM_THREADS": "1",
            "TOKENIZERS_PARALLELISM": "false",
        }
        repo = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")]))
        cmd = [sys.executable, "-m", "workers.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        cmd += ["--log-level", "warning"]
        self.command = cmd
        with self.log.open("ab") as fh:
            self.proc = subprocess.Popen(
                cmd, cwd=self.cwd, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
            )

    def wait_up(self, timeout: float = 120) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"pare serve exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}"
                )
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"pare serve not up after {timeout}s:\n{self.log.read_text()[-3000:]}")

    @property
    def key(self) -> str:
        return (self.cwd / "var" / "api-key").read_text().strip()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)


def run_job(server: Server, root: Path, timeout: float = 300) -> dict[str, Any]:
    """Upload a text, submit a tiny `id` job with a perplexity evaluation, wait for it to end."""
    import httpx

    text = root / "calib.txt"
    text.write_text(_text(60))
    headers = {"Authorization": f"Bearer {server.key}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
        with text.open("rb") as fh:
            response = client.post("/v1/datasets", files={"file": (text.name, fh)})
        response.raise_for_status()
        dataset = response.json()["id"]
        body = {
            "model": {"id": MODEL_ID},
            "method": {"name": "id"},
            "target": {"mac_ratio": 0.6},
            "calibration": {"dataset": dataset, "num_samples": 8, "max_seq_length": 32, "seed": 0},
            "evaluation": [{"task": "perplexity", "dataset": dataset, "seq_len": 32}],
        }
        response = client.post("/v1/jobs", json=body)
        response.raise_for_status()
        job_id = response.json()["id"]
        deadline = time.monotonic() + timeout
        while True:
            job = client.get(f"/v1/jobs/{job_id}").json()
            if job["status"] in ("succeeded", "failed", "cancelled"):
                return job
            if time.monotonic() > deadline:
                raise RuntimeError(f"job {job_id} still {job['status']} after {timeout}s")
            time.sleep(0.5)


# ----------------------------------------------------------------------------- statistics


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def latency_stats(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """p50/p95/p99/max (ms) over every sample, and errors (a transport error or a status other than 200)."""
    ms = sorted(s["ms"] for s in samples)
    statuses: dict[str, int] = {}
    for s in samples:
        key = str(s["status"]) if s["status"] is not None else f"error:{s['error']}"
        statuses[key] = statuses.get(key, 0) + 1
    errors = sum(n for key, n in statuses.items() if key != "200")
    return {
        "requests": len(samples),
        "errors": errors,
        "statuses": statuses,
        "p50_ms": round(percentile(ms, 50), 2),
        "p95_ms": round(percentile(ms, 95), 2),
        "p99_ms": round(percentile(ms, 99), 2),
        "max_ms": round(ms[-1], 2) if ms else None,
        "mean_ms": round(sum(ms) / len(ms), 2) if ms else None,
    }


def server_histogram(client: Any, route: str) -> dict[str, float]:
    """Cumulative bucket counts of pare_http_request_duration_seconds for GET `route` (le -> count)."""
    text = client.get("/metrics").text
    buckets: dict[str, float] = {}
    pattern = re.compile(r"pare_http_request_duration_seconds_bucket\{(?P<labels>[^}]*)\} (?P<value>\S+)")
    for match in pattern.finditer(text):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group("labels")))
        if labels.get("method") == "GET" and labels.get("route") == route:
            buckets[labels["le"]] = float(match.group("value"))
    return buckets


def histogram_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    """Requests per bucket between two scrapes and the bucket holding p50/p99 (an upper bound, s)."""
    delta = {le: after.get(le, 0.0) - before.get(le, 0.0) for le in after}
    order = sorted(delta, key=lambda le: float("inf") if le == "+Inf" else float(le))
    total = delta.get("+Inf", 0.0)

    def bound(p: float) -> str | None:
        for le in order:
            if total and delta[le] >= p / 100 * total:
                return le
        return None

    return {
        "requests": int(total),
        "cumulative": {le: int(delta[le]) for le in order},
        "p50_le_s": bound(50),
        "p99_le_s": bound(99),
    }


# ----------------------------------------------------------------------------- tool 1: httpx


async def _burst(client: Any, path: str, n: int, in_flight: dict[str, int]) -> list[dict[str, Any]]:
    import httpx

    async def one() -> dict[str, Any]:
        in_flight["now"] += 1
        in_flight["peak"] = max(in_flight["peak"], in_flight["now"])
        start = time.perf_counter()
        try:
            response = await client.get(path)
            return {"ms": (time.perf_counter() - start) * 1000, "status": response.status_code, "error": None}
        except httpx.HTTPError as exc:
            return {"ms": (time.perf_counter() - start) * 1000, "status": None, "error": type(exc).__name__}
        finally:
            in_flight["now"] -= 1

    return list(await asyncio.gather(*(one() for _ in range(n))))


async def httpx_load(url: str, key: str, path: str, *, concurrency: int, rounds: int) -> dict[str, Any]:
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(
        base_url=url, headers=headers, limits=limits, timeout=CLIENT_TIMEOUT_S
    ) as client:
        warm_flight = {"now": 0, "peak": 0}
        t = time.perf_counter()
        warmup = await _burst(client, path, concurrency, warm_flight)
        warm_wall = time.perf_counter() - t
        per_round, samples, peak = [], [], 0
        for _ in range(rounds):
            await asyncio.sleep(0.5)  # let the server settle between bursts
            flight = {"now": 0, "peak": 0}
            t = time.perf_counter()
            burst = await _burst(client, path, concurrency, flight)
            wall = time.perf_counter() - t
            peak = max(peak, flight["peak"])
            per_round.append(
                {**latency_stats(burst), "wall_s": round(wall, 3), "peak_in_flight": flight["peak"]}
            )
            r = per_round[-1]
            print(
                f"  httpx round {len(per_round)}: p99 {r['p99_ms']} ms, "
                f"max {r['max_ms']} ms, errors {r['errors']}",
                file=sys.stderr,
                flush=True,
            )
            samples += burst
    return {
        "tool": f"httpx {httpx.__version__} AsyncClient + asyncio.gather",
        "concurrency": concurrency,
        "rounds": rounds,
        "warmup_round": {
            **latency_stats(warmup),
            "wall_s": round(warm_wall, 3),
            "peak_in_flight": warm_flight["peak"],
            "note": "first burst: opens the connections; not in `all`",
        },
        "per_round": per_round,
        "all": {**latency_stats(samples), "peak_in_flight": peak},
    }


def sequential(url: str, key: str, path: str, n: int = 50) -> dict[str, Any]:
    import httpx

    samples = []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
        client.get(path)
        for _ in range(n):
            start = time.perf_counter()
            response = client.get(path)
            samples.append(
                {"ms": (time.perf_counter() - start) * 1000, "status": response.status_code, "error": None}
            )
    return latency_stats(samples)


# ----------------------------------------------------------------------------- tool 2: wrk

WRK_SCRIPT = """
done = function(summary, latency, requests)
  for _, p in pairs({50, 75, 90, 95, 99, 99.9}) do
    io.write(string.format("PCTL %g %d\\n", p, latency:percentile(p)))
  end
  io.write(string.format("MAX %d\\n", latency.max))
  io.write(string.format("SUMMARY %d %d %d %d %d %d %d\\n", summary.requests, summary.duration,
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.status,
    summary.errors.timeout))
end
"""


def wrk_load(url: str, key: str, path: str, *, concurrency: int, seconds: int, root: Path) -> dict[str, Any]:
    wrk = shutil.which("wrk")
    if wrk is None:
        return {"skipped": "wrk is not installed (apt-get install -y wrk)"}
    script = root / "report.lua"
    script.write_text(WRK_SCRIPT)
    threads = min(2, os.cpu_count() or 1)
    cmd = [
        wrk, f"-t{threads}", f"-c{concurrency}", f"-d{seconds}s", "--timeout", "10s", "--latency",
        "-s", str(script), "-H", f"Authorization: Bearer {key}", f"{url}{path}",
    ]  # fmt: skip
    version = subprocess.run([wrk, "-v"], capture_output=True, text=True).stdout.splitlines()
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    out = result.stdout
    pctl = {
        f"p{float(p):g}_ms": round(int(us) / 1000, 2)
        for p, us in re.findall(r"^PCTL (\S+) (\d+)$", out, re.M)
    }
    max_us = re.search(r"^MAX (\d+)$", out, re.M)
    summary = re.search(r"^SUMMARY (\d+) (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)$", out, re.M)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    record: dict[str, Any] = {
        "tool": version[0].strip() if version else "wrk",
        "command": " ".join(cmd).replace(key, "<key>"),
        "threads": threads,
        "connections": concurrency,
        "seconds": seconds,
        **pctl,
        "max_ms": round(int(max_us.group(1)) / 1000, 2) if max_us else None,
        "stdout": [
            line
            for line in out.replace(key, "<key>").splitlines()
            if not line.startswith(("PCTL", "MAX", "SUMMARY"))
        ],
    }
    if summary:
        requests, duration_us, connect, read, write, status, timeout = map(int, summary.groups())
        record |= {
            "requests": requests,
            "requests_per_s": round(requests / (duration_us / 1e6), 1),
            "socket_errors": {"connect": connect, "read": read, "write": write, "timeout": timeout},
            "non_2xx": status,
            "errors": connect + read + write + timeout + status,
        }
    if non2xx:
        record["non_2xx"] = int(non2xx.group(1))
    if record.get("requests") == 0:
        # wrk reports only completed requests: the in-flight ones never answered in the whole run
        record |= {k: None for k in record if k.startswith("p") and k.endswith("_ms")}
        record |= {"max_ms": None, "errors": concurrency, "no_response": True}
        record["note"] = f"no request completed in {seconds} s: all {concurrency} in flight unanswered"
    if result.returncode != 0:
        record["returncode"] = result.returncode
        record["stderr"] = result.stderr[-2000:]
    return record


# ----------------------------------------------------------------------------- main


def recover(client: Any, path: str, timeout: float = 120) -> float | None:
    """Seconds until one GET of `path` answers 200 again (leftover requests drain); None if never."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        try:
            if client.get(path, timeout=10).status_code == 200:
                return round(time.perf_counter() - start, 2)
        except Exception:  # noqa: BLE001 - still wedged: try again
            pass
        time.sleep(1)
    return None


def scrape(client: Any) -> dict[str, float] | None:
    try:
        return server_histogram(client, ROUTE)
    except Exception:  # noqa: BLE001 - /metrics needs the database too
        return None


def server_log_summary(log: Path) -> dict[str, int]:
    """How often the server logged each kind of failure (the profile of an error, in numbers)."""
    text = log.read_text(errors="replace") if log.exists() else ""
    return {
        "database_unavailable_503": text.count("database unavailable:"),
        "pool_timeout": text.count("QueuePool limit of size"),
        "sqlite_database_is_locked": text.count("database is locked\n[SQL: BEGIN IMMEDIATE]"),
        "embedded_worker_pass_failed": text.count("embedded worker pass failed"),
        "reaper_pass_failed": text.count("reaper pass failed"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--wrk-seconds", type=int, default=10)
    parser.add_argument("--no-wrk", action="store_true")
    parser.add_argument("--results-dir", type=Path, default=None)
    parser.add_argument(
        "--keep", action="store_true", help="Keep the temporary directory (server log, database)."
    )
    args = parser.parse_args(argv)

    import httpx

    from workers.models import place_in_cache

    root = Path(tempfile.mkdtemp(prefix="pare-api-load-"))
    servers: list[Server] = []

    def start(name: str) -> Server:
        """A fresh `pare serve` on the same directory, so one tool's backlog never reaches the next."""
        for old in servers:
            old.stop()
        server = Server(root, hf_home, name)
        servers.append(server)
        server.wait_up()
        return server

    try:
        hf_home = root / "hf"
        place_in_cache(make_tiny_llama(root / "src" / "tiny-llama"), MODEL_ID, hf_home=hf_home)
        server = start("setup")
        job = run_job(server, root)
        path = ROUTE.format(job_id=job["id"])
        key = server.key
        headers = {"Authorization": f"Bearer {key}"}
        body_bytes = len(httpx.get(f"{server.url}{path}", headers=headers, timeout=CLIENT_TIMEOUT_S).content)
        seq = sequential(server.url, key, path)

        server = start("httpx")
        with httpx.Client(base_url=server.url, headers=headers, timeout=CLIENT_TIMEOUT_S) as client:
            before = scrape(client)
            load = asyncio.run(
                httpx_load(server.url, key, path, concurrency=args.concurrency, rounds=args.rounds)
            )
            load["recovery_s"] = recover(client, path)
            after = scrape(client)
        load["server_side"] = {
            "source": "pare_http_request_duration_seconds (app time to the response start), warm-up included",
            **(
                histogram_delta(before, after)
                if before is not None and after is not None
                else {"error": "/metrics did not answer"}
            ),
        }
        load["server_alive_after"] = server.proc.poll() is None
        load["server_log"] = server_log_summary(server.log)

        if args.no_wrk:
            wrk: dict[str, Any] = {"skipped": "--no-wrk"}
        elif shutil.which("wrk") is None:
            wrk = {"skipped": "wrk is not installed (apt-get install -y wrk)"}
        else:
            server = start("wrk")
            wrk = wrk_load(
                server.url, key, path, concurrency=args.concurrency, seconds=args.wrk_seconds, root=root
            )
            with httpx.Client(base_url=server.url, headers=headers, timeout=CLIENT_TIMEOUT_S) as client:
                wrk["recovery_s"] = recover(client, path)
            wrk["server_alive_after"] = server.proc.poll() is None
            wrk["server_log"] = server_log_summary(server.log)
        command = servers[0].command
    finally:
        for old in servers:
            old.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    h = load["all"]
    httpx_pass = h["errors"] == 0 and h["p99_ms"] < BAR_P99_MS
    wrk_pass = (
        None
        if "skipped" in wrk
        else (
            wrk.get("requests", 0) > 0
            and wrk.get("errors", 1) == 0
            and (wrk.get("p99_ms") or 1e9) < BAR_P99_MS
        )
    )
    payload = {
        "suite": "api_load",
        "bar": f"{args.concurrency} concurrent GET {ROUTE} against a running service: "
        f"no errors, p99 < {BAR_P99_MS:g} ms",
        "pass": bool(httpx_pass and wrk_pass is not False),
        "pass_by_tool": {"httpx": httpx_pass, "wrk": wrk_pass},
        "server": {
            "mode": "embedded `pare serve` (SQLite WAL, local storage, in-process worker idle), auth on, "
            "one uvicorn process, default settings",
            "command": " ".join(command[1:]),
            "restarts": "a fresh server process (same database) for the setup, the httpx and the wrk phase",
        },
        "job": {
            "status": job["status"],
            "response_bytes": body_bytes,
            "results_keys": sorted((job.get("results") or {}).keys()),
        },
        "sequential": {**seq, "note": "one request at a time: the per-request service time"},
        "httpx": load,
        "wrk": wrk,
    }
    protocol = {
        "target": "loopback 127.0.0.1, one job (succeeded, with results), Bearer key of tenant `local`",
        "sequential": "50 GETs one after another on one keep-alive connection: service time",
        "httpx": f"warm-up burst, then {args.rounds} bursts of {args.concurrency} GETs started together "
        f"(asyncio.gather; pool of that many connections; {CLIENT_TIMEOUT_S:g} s timeout); client wall "
        "time per request; an error is a transport error (timeout included) or a status other than 200",
        "wrk": f"wrk -t2 -c{args.concurrency} -d{args.wrk_seconds}s --timeout 10s: closed loop, latency "
        "from wrk's histogram; errors = socket errors (timeouts included) + non-2xx",
        "recovery_s": "after each tool, seconds until a single GET answers 200 again",
        "machine": "the load generator and the server share the machine's cores",
    }
    out = write_result("api_load", payload, protocol=protocol, results_dir=args.results_dir)

    print(f"job {job['status']}, GET body {body_bytes} bytes; sequential p50 {seq['p50_ms']} ms")
    for name, r in (("httpx", h), ("wrk", wrk)):
        if "skipped" in r:
            print(f"{name:<6} skipped: {r['skipped']}")
            continue
        print(
            f"{name:<6} p50 {r.get('p50_ms')} ms  p95 {r.get('p95_ms')} ms  p99 {r.get('p99_ms')} ms  "
            f"max {r.get('max_ms')} ms  errors {r.get('errors')}"
            + (
                f"  ({r.get('requests')} requests, {r['requests_per_s']} req/s)"
                if "requests_per_s" in r
                else ""
            )
        )
    for name, r in (("httpx", load), ("wrk", wrk)):
        if "server_log" in r:
            print(f"{name:<6} server log: {r['server_log']}, recovered after {r.get('recovery_s')} s")
    print(f"bar p99 < {BAR_P99_MS:g} ms, no errors: {'PASS' if payload['pass'] else 'FAIL'}  -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

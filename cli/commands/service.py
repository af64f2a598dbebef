"""`pare` service commands: serve, worker, db, keys, and the HTTP client (jobs, datasets).

Everything heavy is imported inside the command bodies, so `pare --help` stays fast and the
API process never imports torch (the embedded worker imports the pipeline on its first job).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from cli.options import MAC_TARGETS, MethodChoice, target_object, target_options

DEFAULT_API_URL = "http://127.0.0.1:8000"
LOCAL_KEY_FILE = Path("var/api-key")


# ---------------------------------------------------------------- server side


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option(
    "--no-auth", is_flag=True, help="Development only: no API keys, every caller is tenant 'local'."
)
@click.option("--no-migrate", is_flag=True, help="Do not run `alembic upgrade head` first.")
@click.option("--log-level", default="info", show_default=True)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="API processes (with PARE_BROKER_URL set; the embedded mode is one process).",
)
def serve(host: str, port: int, no_auth: bool, no_migrate: bool, log_level: str, workers: int) -> None:
    """Run the API. Without PARE_BROKER_URL it is the whole service in one process (embedded mode):
    SQLite at ./var/pare.db, artifacts in ./var/artifacts, and an in-process worker thread.
    On first start with auth on, a key for tenant 'local' is created, printed and saved to ./var/api-key.
    With PARE_BROKER_URL, jobs go to Celery workers and --workers N runs N API processes.
    """
    import uvicorn

    from app.db.migrate import upgrade
    from app.main import create_app
    from app.settings import get_settings

    settings = get_settings()
    if no_auth:
        settings = settings.model_copy(update={"auth": False})
    if workers > 1 and not settings.broker_url:
        raise click.UsageError(
            "--workers needs PARE_BROKER_URL: the embedded mode runs its job worker in the API process"
        )
    if not no_migrate:
        upgrade(database_url=settings.database_url)
    if workers > 1:
        _serve_processes(host, port, log_level, workers, no_auth)
        return
    dispatcher, worker = None, None
    if not settings.broker_url:
        from workers.tasks import EmbeddedWorker

        worker = EmbeddedWorker(settings)
        dispatcher = worker.dispatcher
        if settings.auth:
            _ensure_local_key(settings.database_url)
        worker.start()
        click.echo(
            f"embedded mode: database {settings.database_url}, storage {settings.storage_url}", err=True
        )
    app = create_app(settings, dispatcher=dispatcher)
    try:
        uvicorn.run(app, host=host, port=port, log_level=log_level)
    finally:
        if worker is not None:
            worker.stop()


def _serve_processes(host: str, port: int, log_level: str, workers: int, no_auth: bool) -> None:
    """N uvicorn processes sharing the socket; each builds the app from the environment."""
    import tempfile

    import uvicorn

    if no_auth:
        os.environ["PARE_AUTH"] = "false"
    with tempfile.TemporaryDirectory(prefix="pare-metrics-") as metrics_dir:
        os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", metrics_dir)
        uvicorn.run(
            "app.main:create_app", factory=True, host=host, port=port, log_level=log_level, workers=workers
        )


def _ensure_local_key(database_url: str) -> None:
    """First start of the embedded server: create tenant 'local' and a key, print it and save it."""
    from app.db.engine import session_scope
    from app.services import keys

    with session_scope(database_url) as session:
        if keys.has_keys(session):
            if LOCAL_KEY_FILE.exists():
                click.echo(
                    f"API key in {LOCAL_KEY_FILE} (or create one: pare keys create --tenant NAME)", err=True
                )
            return
        _, key = keys.create_key(session, tenant_name="local")
    LOCAL_KEY_FILE.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(LOCAL_KEY_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    click.echo(
        f"created an API key for tenant 'local' (saved to {LOCAL_KEY_FILE}; clients read it from there):"
    )
    click.echo(key)


@click.command()
@click.option("-Q", "--queue", default=None, help="Queue to consume (default PARE_QUEUE, 'gpu').")
@click.option("--concurrency", default=1, show_default=True, type=int, help="Processes; one per GPU.")
@click.option(
    "--pool", default="prefork", show_default=True, type=click.Choice(["prefork", "solo", "threads"])
)
@click.option("--beat", is_flag=True, help="Also run the reaper on a schedule in this worker (celery beat).")
@click.option("--loglevel", default="INFO", show_default=True)
def worker(queue: str | None, concurrency: int, pool: str, beat: bool, loglevel: str) -> None:
    """Run a Celery worker for compression jobs (needs PARE_BROKER_URL)."""
    from app.settings import get_settings
    from workers.celery_app import app

    settings = get_settings()
    if not settings.broker_url:
        raise click.UsageError(
            "PARE_BROKER_URL is not set; `pare serve` runs jobs in-process without a broker"
        )
    from app.services import scratch

    try:  # what runs killed on this host left behind
        scratch.sweep(database_url=settings.database_url, work_dir=settings.work_dir)
    except Exception as exc:  # noqa: BLE001 - the database may be down; the reaper sweeps later
        click.echo(f"scratch sweep skipped: {exc}", err=True)
    argv = [
        "worker",
        "-Q",
        queue or settings.queue,
        "--concurrency",
        str(concurrency),
        "--pool",
        pool,
        "--loglevel",
        loglevel,
        "--without-gossip",
        "--without-mingle",
    ]
    if beat:
        argv.append("--beat")
    app.worker_main(argv)


@click.group()
def db() -> None:
    """Database schema (Alembic)."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION on PARE_DATABASE_URL."""
    from app.db.migrate import upgrade
    from app.settings import get_settings

    upgrade(database_url=get_settings().database_url, revision=revision)
    click.echo(f"database at {revision}")


@db.command("downgrade")
@click.option("--revision", default="base", show_default=True)
def db_downgrade(revision: str) -> None:
    """Revert migrations down to REVISION."""
    from app.db.migrate import downgrade
    from app.settings import get_settings

    downgrade(database_url=get_settings().database_url, revision=revision)
    click.echo(f"database at {revision}")


@click.group()
def keys() -> None:
    """API keys."""


@keys.command("create")
@click.option("--tenant", required=True, help="Tenant name (created if new).")
def keys_create(tenant: str) -> None:
    """Create an API key; the key is printed once, as the last line."""
    from app.db.engine import session_scope
    from app.db.migrate import upgrade
    from app.services import keys as key_service
    from app.settings import get_settings

    settings = get_settings()
    upgrade(database_url=settings.database_url)
    with session_scope(settings.database_url) as session:
        row, key = key_service.create_key(session, tenant_name=tenant)
        tenant_id, secret = row.id, row.webhook_secret
    click.echo(f"tenant: {tenant} ({tenant_id})")
    click.echo(f"webhook secret: {secret}")
    click.echo(key)


# ---------------------------------------------------------------- client side


def _client(api_url: str | None, api_key: str | None) -> Any:
    import httpx

    key = api_key or (LOCAL_KEY_FILE.read_text().strip() if LOCAL_KEY_FILE.is_file() else None)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=api_url or DEFAULT_API_URL, headers=headers, timeout=60)


def _check(response: Any) -> Any:
    if response.status_code >= 400:
        try:
            body = response.json()
            message = f"{body.get('title')}: {body.get('detail')}" + (
                f" (field {body['field']})" if body.get("field") else ""
            )
        except ValueError:
            message = response.text
        raise click.ClickException(f"HTTP {response.status_code}: {message}")
    return response.json() if response.content else None


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))


client_options = [
    click.option("--api-url", envvar="PARE_API_URL", default=DEFAULT_API_URL, show_default=True),
    click.option(
        "--api-key", envvar="PARE_API_KEY", default=None, help="Default: $PARE_API_KEY or ./var/api-key."
    ),
]


def with_client(fn: Any) -> Any:
    for option in reversed(client_options):
        fn = option(fn)
    return fn


@click.group()
def jobs() -> None:
    """Submit and follow compression jobs on a running service."""


def _upload(client: Any, path: Path) -> str:
    with path.open("rb") as fh:
        return _check(client.post("/v1/datasets", files={"file": (path.name, fh)}))["id"]


@jobs.command("submit")
@click.option(
    "--file", "request_file", type=click.Path(exists=True, dir_okay=False), help="A full JSON request."
)
@click.option("--model", help="Hub id, e.g. sentence-transformers/all-MiniLM-L6-v2.")
@click.option("--revision")
@click.option("--method", type=MethodChoice(), default="id", show_default=True)
@click.option(
    "--mac-ratio", "--mac-target", "mac_ratio", type=MAC_TARGETS,
    help="Kept fraction of block MACs, in (0, 1], or a sweep: 0.9,0.7,0.5.",
)
@target_options
@click.option("--calibration", help="A dataset id, a hub dataset id, or a local file (uploaded first).")
@click.option("--text-column")
@click.option("--num-samples", type=int, default=128, show_default=True)
@click.option("--max-seq-length", type=int, default=128, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--eval", "evals", multiple=True, help="TASK or TASK=DATASET (dataset id, hub id or local file)."
)
@click.option("--idempotency-key")
@click.option("--follow", is_flag=True, help="Follow progress until the job ends.")
@with_client
def jobs_submit(
    request_file: str | None,
    model: str | None,
    revision: str | None,
    method: str,
    mac_ratio: tuple[float, ...] | None,
    max_drop: float | None,
    max_ratio: float | None,
    metric: str | None,
    calibration: str | None,
    text_column: str | None,
    num_samples: int,
    max_seq_length: int,
    seed: int,
    evals: tuple[str, ...],
    idempotency_key: str | None,
    follow: bool,
    api_url: str,
    api_key: str | None,
) -> None:
    """Submit a job; prints it, and its id as the last line."""
    with _client(api_url, api_key) as client:
        if request_file:
            body = json.loads(Path(request_file).read_text())
        else:
            if not (model and calibration):
                raise click.UsageError("--model, --calibration and a target are required (or --file)")
            target = target_object(mac_ratio, max_drop, max_ratio, metric, ratio_flag="--mac-ratio")

            def ref(value: str) -> str:
                return _upload(client, Path(value)) if Path(value).is_file() else value

            evaluation = []
            for spec in evals:
                task, _, dataset = spec.partition("=")
                evaluation.append({"task": task} | ({"dataset": ref(dataset)} if dataset else {}))
            body = {
                "model": {"id": model} | ({"revision": revision} if revision else {}),
                "method": {"name": method},
                "target": target,
                "calibration": {
                    "dataset": ref(calibration),
                    "num_samples": num_samples,
                    "max_seq_length": max_seq_length,
                    "seed": seed,
                }
                | ({"text_column": text_column} if text_column else {}),
                "evaluation": evaluation,
            }
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        job = _check(client.post("/v1/jobs", json=body, headers=headers))
        _echo_json(job)
        click.echo(job["id"])
        if follow:
            _follow(client, job["id"])


@jobs.command("list")
@click.option("--status")
@click.option("--model")
@click.option("--limit", type=int, default=20, show_default=True)
@click.option("--after")
@with_client
def jobs_list(
    status: str | None, model: str | None, limit: int, after: str | None, api_url: str, api_key: str | None
) -> None:
    """List jobs, newest first."""
    params = {
        k: v for k, v in {"status": status, "model": model, "limit": limit, "after": after}.items() if v
    }
    with _client(api_url, api_key) as client:
        page = _check(client.get("/v1/jobs", params=params))
    for job in page["data"]:
        percent = (job.get("progress") or {}).get("percent", 0)
        click.echo(
            f"{job['id']}  {job['status']:<10}  {percent:5.1f}%  {job['model']['id']}  {job['created_at']}"
        )
    if page["has_more"]:
        click.echo(f"more: --after {page['data'][-1]['id']}")


@jobs.command("show")
@click.argument("job_id")
@with_client
def jobs_show(job_id: str, api_url: str, api_key: str | None) -> None:
    """Print a job as JSON."""
    with _client(api_url, api_key) as client:
        _echo_json(_check(client.get(f"/v1/jobs/{job_id}")))


@jobs.command("cancel")
@click.argument("job_id")
@with_client
def jobs_cancel(job_id: str, api_url: str, api_key: str | None) -> None:
    """Cancel a job (running jobs stop at the next block boundary)."""
    with _client(api_url, api_key) as client:
        job = _check(client.post(f"/v1/jobs/{job_id}/cancel"))
    click.echo(f"{job['id']} {job['status']}")


@jobs.command("follow")
@click.argument("job_id")
@with_client
def jobs_follow(job_id: str, api_url: str, api_key: str | None) -> None:
    """Follow a job's events with a progress bar; exits non-zero unless it succeeds."""
    with _client(api_url, api_key) as client:
        _follow(client, job_id)


def _sse(response: Any) -> Any:
    """Yield (event, data) pairs from a text/event-stream response."""
    event, data = "message", list[str]()
    for line in response.iter_lines():
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "message", list[str]()
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())


def _follow(client: Any, job_id: str) -> None:
    from tqdm import tqdm

    bar = tqdm(
        total=100.0, unit="%", bar_format="{l_bar}{bar}| {n:.1f}% [{elapsed}<{remaining}]", file=sys.stderr
    )
    headers = {"Accept": "text/event-stream"}
    with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers, timeout=None) as response:
        if response.status_code >= 400:
            response.read()
            _check(response)
        for event, data in _sse(response):
            if event == "end":
                break
            payload = json.loads(data).get("data", {})
            if event == "progress":
                bar.set_description(str(payload.get("stage", "")))
                bar.n = float(payload.get("percent") or 0.0)
                bar.refresh()
            elif not event.startswith("webhook"):
                bar.write(f"{event} {json.dumps(payload)}")
    bar.close()
    job = _check(client.get(f"/v1/jobs/{job_id}"))
    click.echo(f"{job_id} {job['status']}")
    if job["status"] != "succeeded":
        raise SystemExit(1)


@jobs.command("download")
@click.argument("job_id")
@click.option("--out", type=click.Path(file_okay=False), help="Directory (default ./<job id>).")
@with_client
def jobs_download(job_id: str, out: str | None, api_url: str, api_key: str | None) -> None:
    """Download a job's artifacts and verify each sha256."""
    dest = Path(out or job_id)
    dest.mkdir(parents=True, exist_ok=True)
    with _client(api_url, api_key) as client:
        for artifact in _check(client.get(f"/v1/jobs/{job_id}/artifacts")):
            target = dest / artifact["name"]
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(target.name + ".part")
            digest = hashlib.sha256()
            with client.stream("GET", artifact["download_url"]) as response, tmp.open("wb") as fh:
                if response.status_code >= 400:
                    response.read()
                    _check(response)
                for chunk in response.iter_bytes():
                    fh.write(chunk)
                    digest.update(chunk)
            if digest.hexdigest() != artifact["sha256"]:
                tmp.unlink()
                raise click.ClickException(f"{artifact['name']}: sha256 mismatch")
            tmp.replace(target)
            click.echo(f"{artifact['sha256']}  {target}")


@click.group()
def datasets() -> None:
    """Upload calibration and evaluation data."""


@datasets.command("upload")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@with_client
def datasets_upload(file: str, api_url: str, api_key: str | None) -> None:
    """Upload FILE (.txt, .jsonl, .csv, .tsv, .parquet); prints the dataset, its id last."""
    with _client(api_url, api_key) as client:
        path = Path(file)
        with path.open("rb") as fh:
            dataset = _check(client.post("/v1/datasets", files={"file": (path.name, fh)}))
    _echo_json(dataset)
    click.echo(dataset["id"])


COMMANDS: list[click.Command] = [serve, worker, db, keys, jobs, datasets]

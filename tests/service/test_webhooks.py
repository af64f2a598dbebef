"""Webhooks: signed, retried with backoff, each attempt recorded as an event."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import httpx
from sqlalchemy import select

from app.db.engine import session_scope
from app.db.models import Job, JobEvent, Tenant
from app.services import webhooks
from tests.factories import insert_queued, job_body, make_key, upload_dataset


class Receiver(BaseHTTPRequestHandler):
    calls: list[tuple[dict[str, str], bytes]] = []
    fail_first = 2

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.calls.append((dict(self.headers), body))
        self.send_response(500 if len(Receiver.calls) <= Receiver.fail_first else 204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_signed_retried_recorded(api_url: str, settings) -> None:  # type: ignore[no-untyped-def]
    server = HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    key = make_key(settings, f"hooks-{secrets.token_hex(3)}")
    try:
        with httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
            ds = upload_dataset(client)
            job_id = insert_queued(settings, client, ds)
            with session_scope(settings.database_url) as session:
                job = session.get(Job, job_id)
                job.request = job_body(ds) | {"webhook": {"url": url, "events": ["cancelled"]}}
            fast = settings.model_copy(update={"webhook_backoff_seconds": 0.05})
            assert client.post(f"/v1/jobs/{job_id}/cancel").json()["status"] == "cancelled"
            assert webhooks.deliver(settings=fast, job_id=job_id)
        assert len(Receiver.calls) >= 3
        headers, body = Receiver.calls[-1]
        with session_scope(settings.database_url) as session:
            secret = session.scalars(
                select(Tenant.webhook_secret).join(Job, Job.tenant_id == Tenant.id).where(Job.id == job_id)
            ).one()
            types = [
                e.type
                for e in session.scalars(
                    select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.seq)
                )
            ]
        timestamp = headers["Pare-Webhook-Timestamp"]
        message = f"{headers['Pare-Webhook-Id']}.{timestamp}.{body.decode()}".encode()
        expected = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
        assert headers["Pare-Signature"] == f"t={timestamp},v1={expected}"
        assert json.loads(body)["data"]["status"] == "cancelled"
        assert types.count("webhook.retrying") >= 2 and "webhook.delivered" in types
    finally:
        server.shutdown()

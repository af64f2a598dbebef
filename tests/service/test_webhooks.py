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


def _cancelled_job_hooked_to_receiver(  # type: ignore[no-untyped-def]
    client: httpx.Client, settings, url: str, *, via_api: bool = True
) -> str:
    """A job cancelled while queued whose request asks for a webhook at `url` on `cancelled`.
    Cancelled through the API (which schedules its own delivery, allowed to loopback in these
    tests) or, `via_api=False`, in the database (no delivery until the test calls deliver)."""
    ds = upload_dataset(client)
    job_id = insert_queued(settings, client, ds)
    with session_scope(settings.database_url) as session:
        job = session.get(Job, job_id)
        job.request = job_body(ds) | {"webhook": {"url": url, "events": ["cancelled"]}}
        if not via_api:
            job.status = "cancelled"
    if via_api:
        assert client.post(f"/v1/jobs/{job_id}/cancel").json()["status"] == "cancelled"
    return job_id


def test_signed_retried_recorded(api_url: str, settings) -> None:  # type: ignore[no-untyped-def]
    server = HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    key = make_key(settings, f"hooks-{secrets.token_hex(3)}")
    try:
        with httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
            job_id = _cancelled_job_hooked_to_receiver(client, settings, url)
            fast = settings.model_copy(update={"webhook_backoff_seconds": 0.05})
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


def test_webhooks_to_internal_addresses_are_refused(api_url: str, settings) -> None:  # type: ignore[no-untyped-def]
    """Server-side request forgery: loopback, private, link-local (metadata) and unspecified targets
    are refused at submit and at delivery, with no connection made, unless allow-listed."""
    from app.errors import InvalidRequest
    from app.services import egress

    internal = ["http://127.0.0.1:9/h", "http://localhost/h", "http://10.0.0.1/h", "http://192.168.1.1/",
                "http://169.254.169.254/latest/meta-data/", "http://[::1]/h", "http://0.0.0.0/",
                "http://[::ffff:127.0.0.1]/", "http://metadata.google.internal/", "http://[fd00:ec2::254]/",
                "http://user:pw@example.com/", "ftp://example.com/"]
    for url in internal:
        try:
            egress.check_url(url, allow_networks=[])
        except InvalidRequest as exc:
            assert exc.field == "webhook.url"
        else:
            raise AssertionError(f"{url} was accepted")
    allowed = egress.check_url("http://127.0.0.1:8080/h?x=1", allow_networks=["127.0.0.0/8"])
    assert allowed.url == "http://127.0.0.1:8080/h?x=1" and allowed.host == "127.0.0.1:8080"
    assert egress.check_url("http://93.184.215.14/h", allow_networks=[]).address == "93.184.215.14"

    server = HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    before = len(Receiver.calls)
    strict = settings.model_copy(update={"webhook_allow_networks": []})
    key = make_key(settings, f"ssrf-{secrets.token_hex(3)}")
    try:
        with httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
            job_id = _cancelled_job_hooked_to_receiver(client, settings, url, via_api=False)
            assert not webhooks.deliver(settings=strict, job_id=job_id)
            events = client.get(f"/v1/jobs/{job_id}/events").json()["data"]
        refused = [e for e in events if e["type"] == "webhook.refused"]
        assert refused and "loopback" in refused[0]["data"]["reason"]
        assert "status_code" not in refused[0]["data"]
        assert len(Receiver.calls) == before  # no connection reached the receiver
    finally:
        server.shutdown()


def test_delivery_connects_to_the_checked_address_not_a_rebound_one(  # type: ignore[no-untyped-def]
    api_url: str, settings, monkeypatch
) -> None:
    """DNS rebinding: the name resolves to a public address when checked and to loopback (where
    a receiver listens) afterwards; the delivery goes to the checked address, never to loopback."""
    import socket

    server = HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    public = "93.184.215.14"  # a public address; unreachable from this sandbox, so the attempt fails
    real = socket.getaddrinfo
    lookups: list[str] = []

    def rebinding(host, *args, **kwargs):  # type: ignore[no-untyped-def]
        if host == "rebind.test":
            lookups.append(host)
            answer = public if len(lookups) == 1 else "127.0.0.1"
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answer, port))]
        return real(host, *args, **kwargs)

    before = len(Receiver.calls)
    once = settings.model_copy(update={"webhook_max_attempts": 1, "webhook_timeout_seconds": 1.0,
                                       "webhook_allow_networks": []})
    key = make_key(settings, f"rebind-{secrets.token_hex(3)}")
    try:
        with httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
            job_id = _cancelled_job_hooked_to_receiver(
                client, settings, f"http://rebind.test:{port}/hook", via_api=False
            )
            monkeypatch.setattr(socket, "getaddrinfo", rebinding)
            delivered = webhooks.deliver(settings=once, job_id=job_id)
            monkeypatch.undo()
            events = client.get(f"/v1/jobs/{job_id}/events").json()["data"]
    finally:
        server.shutdown()
    assert not delivered and lookups == ["rebind.test"]  # resolved once, by the check
    assert len(Receiver.calls) == before  # the loopback receiver was never reached
    failed = [e for e in events if e["type"] == "webhook.failed"]
    assert failed and failed[0]["data"]["error"] in ("ConnectError", "ConnectTimeout"), events

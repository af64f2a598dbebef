"""Webhooks on terminal states: signed JSON POSTs, retried with bounded exponential backoff.

Signature: header `Pare-Signature: t=<unix time>,v1=<hex HMAC-SHA256>` over
f"{webhook_id}.{timestamp}.{body}" with the tenant's webhook secret (`pare keys create` prints
it); `Pare-Webhook-Id` carries the id, so receivers can drop duplicates.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import httpx

from app.db.engine import session_scope
from app.db.jobstate import append_event
from app.db.models import Job, Tenant
from app.errors import InvalidRequest
from app.services import egress
from app.services.jobs import to_resource
from app.settings import Settings

log = logging.getLogger(__name__)


def sign(*, secret: str, webhook_id: str, timestamp: int, body: str) -> str:
    """Hex HMAC-SHA256 over f"{id}.{timestamp}.{body}"."""
    message = f"{webhook_id}.{timestamp}.{body}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _payload(settings: Settings, job_id: str) -> tuple[str, str, str, str] | None:
    """(url, secret, webhook id, body) when the job asks for a webhook on its terminal status."""
    with session_scope(settings.database_url) as session:
        job = session.get(Job, job_id)
        if job is None or not (job.request or {}).get("webhook"):
            return None
        hook = job.request["webhook"]
        if job.status not in hook.get("events", []):
            return None
        tenant = session.get(Tenant, job.tenant_id)
        resource = to_resource(job).model_dump(mode="json")
    body = json.dumps({"type": f"job.{resource['status']}", "data": resource}, separators=(",", ":"))
    return hook["url"], tenant.webhook_secret if tenant else "", f"{job_id}.{resource['status']}", body


def _record(settings: Settings, job_id: str, type_: str, data: dict[str, Any]) -> None:
    with session_scope(settings.database_url) as session:
        append_event(session, job_id=job_id, type=type_, data=data)


def deliver(*, settings: Settings, job_id: str) -> bool:
    """POST the job's terminal state to its webhook, retrying; each outcome is recorded as an event."""
    payload = _payload(settings, job_id)
    if payload is None:
        return False
    url, secret, webhook_id, body = payload
    delay = settings.webhook_backoff_seconds
    for attempt in range(1, settings.webhook_max_attempts + 1):
        try:  # checked again at each attempt: DNS may have changed since the submit
            target = egress.check_url(url, allow_networks=settings.webhook_allow_networks)
        except InvalidRequest as exc:
            _record(settings, job_id, "webhook.refused", {"attempt": attempt, "reason": exc.detail})
            return False
        timestamp = int(time.time())
        signature = sign(secret=secret, webhook_id=webhook_id, timestamp=timestamp, body=body)
        headers = {
            "Content-Type": "application/json",
            "Pare-Webhook-Id": webhook_id,
            "Pare-Webhook-Timestamp": str(timestamp),
            "Pare-Signature": f"t={timestamp},v1={signature}",
            "Host": target.host,
        }
        try:
            with httpx.Client(timeout=settings.webhook_timeout_seconds, follow_redirects=False) as client:
                response = client.request(
                    "POST",
                    target.url,
                    content=body,
                    headers=headers,
                    extensions={"sni_hostname": urlsplit(url).hostname or ""},
                )
            outcome: dict[str, Any] = {"attempt": attempt, "status_code": response.status_code}
            if response.is_success:
                _record(settings, job_id, "webhook.delivered", outcome)
                return True
        except httpx.HTTPError as exc:
            outcome = {"attempt": attempt, "error": type(exc).__name__}
        log.warning("webhook %s attempt %d failed: %s", webhook_id, attempt, outcome)
        if attempt == settings.webhook_max_attempts:
            _record(settings, job_id, "webhook.failed", outcome)
            return False
        _record(settings, job_id, "webhook.retrying", outcome | {"retry_in_seconds": delay})
        time.sleep(delay)
        delay *= 2
    return False


def schedule(*, settings: Settings, job_id: str) -> threading.Thread:
    """Deliver in a background thread (the caller never waits on a slow receiver)."""
    thread = threading.Thread(
        target=_safe_deliver, args=(settings, job_id), name=f"webhook-{job_id}", daemon=True
    )
    thread.start()
    return thread


def _safe_deliver(settings: Settings, job_id: str) -> None:
    try:
        deliver(settings=settings, job_id=job_id)
    except Exception:  # noqa: BLE001 - a webhook must never take a worker down
        log.exception("webhook delivery for %s crashed", job_id)

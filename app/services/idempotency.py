"""Idempotency-Key: the first response is replayed for the same key and body.

The key is claimed in its own committed transaction before any work, so a concurrent request
with the same key sees it in flight (409); another body under the same key is a 422; a failed
first attempt releases the key so the client may retry.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import IdempotencyRecord, utcnow
from app.errors import IdempotencyInFlight, IdempotencyMismatch

IN_FLIGHT_TIMEOUT = timedelta(minutes=2)  # a request that died without answering frees its key


@dataclass(frozen=True)
class Replay:
    status_code: int
    body: dict[str, Any]
    job_id: str | None


def claim_key(factory: sessionmaker[Session], *, tenant_id: str, key: str, body_hash: str) -> Replay | None:
    """Reserve `key`; a Replay when it already answered; raises 409 while in flight, 422 on mismatch."""
    for _ in range(2):
        try:
            with factory() as session, session.begin():
                session.add(IdempotencyRecord(tenant_id=tenant_id, key=key, request_hash=body_hash))
            return None
        except IntegrityError:
            pass
        with factory() as session, session.begin():
            record = session.scalars(
                select(IdempotencyRecord).where(
                    IdempotencyRecord.tenant_id == tenant_id, IdempotencyRecord.key == key
                )
            ).first()
            if record is None:
                continue
            if record.request_hash != body_hash:
                raise IdempotencyMismatch(
                    "this Idempotency-Key was used with a different request body", field="Idempotency-Key"
                )
            if record.status_code is not None:
                return Replay(record.status_code, record.response or {}, record.job_id)
            if utcnow() - record.created_at < IN_FLIGHT_TIMEOUT:
                raise IdempotencyInFlight(
                    "a request with this Idempotency-Key is still being processed", field="Idempotency-Key"
                )
            session.delete(record)
    raise IdempotencyInFlight("could not reserve the Idempotency-Key; retry", field="Idempotency-Key")


def complete_key(
    factory: sessionmaker[Session],
    *,
    tenant_id: str,
    key: str,
    status_code: int,
    body: dict[str, Any],
    job_id: str,
) -> None:
    """Store the first response under the key."""
    with factory() as session, session.begin():
        record = session.scalars(
            select(IdempotencyRecord).where(
                IdempotencyRecord.tenant_id == tenant_id, IdempotencyRecord.key == key
            )
        ).first()
        if record is not None:
            record.status_code, record.response, record.job_id = status_code, body, job_id


def release_key(factory: sessionmaker[Session], *, tenant_id: str, key: str) -> None:
    """Forget an unanswered key after the first attempt failed."""
    with factory() as session, session.begin():
        session.execute(
            delete(IdempotencyRecord).where(
                IdempotencyRecord.tenant_id == tenant_id,
                IdempotencyRecord.key == key,
                IdempotencyRecord.status_code.is_(None),
            )
        )

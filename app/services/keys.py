"""Tenants and API keys. A key is `pare_<key id>_<secret>`; only its sha256 is stored."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import ApiKey, Tenant, utcnow
from app.errors import Unauthorized
from app.ids import new_id

KEY_PREFIX = "pare"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def get_or_create_tenant(session: Session, *, name: str) -> Tenant:
    """The tenant called `name`, created with a fresh webhook secret if new."""
    tenant = session.scalars(select(Tenant).where(Tenant.name == name)).first()
    if tenant is None:
        tenant = Tenant(id=new_id("ten"), name=name, webhook_secret="whsec_" + secrets.token_urlsafe(32))
        session.add(tenant)
        session.flush()
    return tenant


def create_key(session: Session, *, tenant_name: str) -> tuple[Tenant, str]:
    """A new API key for the tenant (created if needed); the plain key is returned once, never stored."""
    tenant = get_or_create_tenant(session, name=tenant_name)
    key_id = secrets.token_hex(6)
    key = f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
    session.add(ApiKey(id=key_id, tenant_id=tenant.id, key_hash=hash_key(key)))
    session.flush()
    return tenant, key


def authenticate(session: Session, *, key: str) -> Tenant:
    """The tenant owning `key`; Unauthorized otherwise (constant-time hash comparison)."""
    parts = key.split("_")
    if len(parts) < 3 or parts[0] != KEY_PREFIX:
        raise Unauthorized("malformed API key")
    row = session.get(ApiKey, parts[1])
    if row is None or row.revoked_at is not None or not hmac.compare_digest(row.key_hash, hash_key(key)):
        raise Unauthorized("unknown or revoked API key")
    tenant = session.get(Tenant, row.tenant_id)
    if tenant is None:
        raise Unauthorized("unknown tenant")
    return tenant


def has_keys(session: Session) -> bool:
    """Whether any unrevoked key exists (the embedded server creates one on first start)."""
    return session.scalars(select(ApiKey.id).where(ApiKey.revoked_at.is_(None)).limit(1)).first() is not None


def revoke_key(session: Session, *, key_id: str) -> bool:
    """Revoke a key by its id."""
    row = session.get(ApiKey, key_id)
    if row is None:
        return False
    row.revoked_at = utcnow()
    return True

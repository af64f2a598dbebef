"""Typed dependencies: settings, a database session, storage, the dispatcher, the caller's tenant."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import Tenant
from app.errors import Unauthorized
from app.queue import Dispatcher
from app.services import keys
from app.settings import Settings
from app.storage import Storage

LOCAL_TENANT = "local"
bearer = HTTPBearer(auto_error=False, description="An API key from `pare keys create --tenant NAME`.")


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_sessions(request: Request) -> sessionmaker[Session]:
    return request.app.state.sessions


def get_db(request: Request) -> Iterator[Session]:
    """A session per request; routes commit explicitly, anything uncommitted is rolled back."""
    with request.app.state.sessions() as session:
        yield session


def get_storage(request: Request) -> Storage:
    return request.app.state.storage


def get_dispatcher(request: Request) -> Dispatcher:
    return request.app.state.dispatcher


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_db)]
SessionsDep = Annotated[sessionmaker[Session], Depends(get_sessions)]
StorageDep = Annotated[Storage, Depends(get_storage)]
DispatcherDep = Annotated[Dispatcher, Depends(get_dispatcher)]


def get_tenant(
    settings: SettingsDep,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Tenant:
    """The tenant of the bearer key (or tenant "local" when auth is off)."""
    if not settings.auth:
        tenant = keys.get_or_create_tenant(session, name=LOCAL_TENANT)
        session.commit()
        return tenant
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("send `Authorization: Bearer <api key>`")
    tenant = keys.authenticate(session, key=credentials.credentials)
    session.rollback()
    return tenant


TenantDep = Annotated[Tenant, Depends(get_tenant)]

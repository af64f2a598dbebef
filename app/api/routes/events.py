"""/v1/jobs/{id}/events: JSON pages, or text/event-stream followed live until the job ends."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

from anyio import to_thread
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session, sessionmaker

from app import schemas
from app.api.deps import DbDep, JobIdPath, TenantDep
from app.api.routes.jobs import PROBLEMS
from app.db.models import TERMINAL, Job
from app.errors import InvalidRequest
from app.ids import MAX_SEQ
from app.services import jobs

router = APIRouter(prefix="/v1/jobs", tags=["events"])
POLL_SECONDS = 0.5
KEEPALIVE_SECONDS = 15.0


def _poll(sessions: sessionmaker[Session], job_id: str, after: int) -> tuple[list[schemas.JobEvent], bool]:
    """New events after `after`, and whether the job is terminal (read in that order)."""
    with sessions() as session:
        job = session.get(Job, job_id)
        terminal = job is None or job.status in TERMINAL
        rows, _ = jobs.list_events(session, job_id=job_id, after=after, limit=500)
        return [jobs.event_resource(e) for e in rows], terminal


async def _stream(request: Request, job_id: str, after: int) -> AsyncIterator[str]:
    sessions = request.app.state.database.read_sessions
    idle = 0.0
    while True:
        events, terminal = await to_thread.run_sync(_poll, sessions, job_id, after)
        for event in events:
            after = event.seq
            data = json.dumps(event.model_dump(mode="json"))
            yield f"id: {event.seq}\nevent: {event.type}\ndata: {data}\n\n"
        if terminal and not events:
            yield "event: end\ndata: {}\n\n"
            return
        if await request.is_disconnected():
            return
        if events:
            idle = 0.0
        else:
            idle += POLL_SECONDS
            if idle >= KEEPALIVE_SECONDS:
                idle = 0.0
                yield ": keep-alive\n\n"
        await asyncio.sleep(POLL_SECONDS)


@router.get(
    "/{job_id}/events",
    response_model=schemas.JobEventList,
    responses={**PROBLEMS, 200: {"content": {"text/event-stream": {}}, "description": "Events"}},
)
async def list_events(
    job_id: JobIdPath,
    request: Request,
    tenant: TenantDep,
    db: DbDep,
    after: Annotated[int, Query(ge=0, le=MAX_SEQ, description="Only events with seq > after.")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    accept: Annotated[str | None, Header()] = None,
    last_event_id: Annotated[
        str | None,
        Header(alias="Last-Event-ID", pattern=r"^[0-9]{1,19}$",
               description="The last seq received (SSE reconnection); 0 to 2**63-1."),
    ] = None,
) -> schemas.JobEventList | StreamingResponse:
    """Progress, metrics and state changes; `Accept: text/event-stream` follows until the job ends."""
    if accept and "text/event-stream" in accept:
        await db.read(lambda s: jobs.get_job(s, tenant_id=tenant.id, job_id=job_id))
        if last_event_id is not None:
            if int(last_event_id) > MAX_SEQ:
                raise InvalidRequest(f"Last-Event-ID is above {MAX_SEQ}", field="Last-Event-ID")
            after = max(after, int(last_event_id))
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(
            _stream(request, job_id, after), media_type="text/event-stream", headers=headers
        )

    def page(session: Session) -> schemas.JobEventList:
        jobs.get_job(session, tenant_id=tenant.id, job_id=job_id)
        rows, has_more = jobs.list_events(session, job_id=job_id, after=after, limit=limit)
        return schemas.JobEventList(data=[jobs.event_resource(e) for e in rows], has_more=has_more)

    return await db.read(page)

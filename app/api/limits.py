"""Request-size cap for every body that is not a dataset upload (uploads stream under their own cap).

An ASGI middleware, so the cap holds before FastAPI reads the body: a declared Content-Length over
the cap is refused at once, and a chunked body is counted as it arrives and cut off at the cap.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.problems import problem

UPLOAD_PATH = "/v1/datasets"


class _TooLarge(Exception):
    pass


class BodySizeLimit:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].rstrip("/") == UPLOAD_PATH:
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await self._refuse(scope, receive, send)
            return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge
            return message

        async def tracking(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracking)
        except _TooLarge:
            if not started:
                await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        detail = (f"request bodies are limited to {self.max_bytes} bytes (PARE_MAX_BODY_BYTES); "
                  "upload data through POST /v1/datasets")
        response = problem(413, "payload_too_large", "Payload too large", detail)
        response.headers["Connection"] = "close"
        await response(scope, receive, send)

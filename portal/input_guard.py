"""Refuse the NUL character at the door (422), before it reaches the database or Temporal.

PostgreSQL cannot store U+0000 in text: a NUL in an ID, a filter or a JSON field used to come
back as a 500 from the driver (found by tests/test_portal_schemathesis.py). Nothing a person
types contains one, so the portal refuses it in the path, the query string and the body
(raw, percent-encoded or as the JSON escape) with a clear 422.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.responses import JSONResponse, PlainTextResponse, Response

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MESSAGE = "the NUL character (U+0000) is not accepted in any field"
_NUL_FORMS = (b"\x00", b"%00", b"\\u0000")
MAX_BUFFERED = 8 * 1024 * 1024  # bodies larger than this go through unchecked (the portal takes none)


def has_nul(data: bytes) -> bool:
    return any(form in data for form in _NUL_FORMS)


class RefuseNul:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        target = bytes(scope.get("raw_path") or b"") + b"?" + bytes(scope.get("query_string") or b"")
        if has_nul(target) or "\x00" in str(scope.get("path", "")):
            await self._refuse(scope, receive, send)
            return
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if not message.get("more_body", False) or size > MAX_BUFFERED:
                break
        body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.request")
        if size <= MAX_BUFFERED and has_nul(body):
            await self._refuse(scope, receive, send)
            return

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        response: Response = (JSONResponse({"detail": MESSAGE}, status_code=422)
                              if path == "/api" or path.startswith("/api/") else PlainTextResponse(MESSAGE, 422))
        await response(scope, receive, send)

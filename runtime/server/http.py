"""HTTP request limits that hold for every route (docs/security.md#http).

    app = BodyLimit(starlette_app, max_bytes=1048576)

`BodyLimit` bounds request bodies before any route reads them: a declared
`Content-Length` over the limit is answered 413 without reading a byte of the
body, and a chunked body is read only up to the limit. Routes need not know:
reading past the limit raises a `ProtocolError` (413), which the routes already
turn into the usual JSON error envelope.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from .protocol import MESSAGE_TOO_LARGE, ProtocolError

ASGIApp = Callable[[dict, Any, Any], Awaitable[None]]

__all__ = ["BodyLimit", "body_too_large"]


def body_too_large(limit: int) -> ProtocolError:
    """The 413 error of a body over `server.max_body_bytes`."""
    return ProtocolError(
        MESSAGE_TOO_LARGE,
        f"the request body is over max_body_bytes ({limit} bytes)",
        reason="max_body_bytes",
    )


class BodyLimit:
    """ASGI middleware: no HTTP request body larger than `max_bytes` is read."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self._app = app
        self._max = max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self._max:
            # Answered from the headers alone: uvicorn does not read the body (nor
            # send `100 Continue`) until the app asks for it, and the app never does.
            await _refuse(send, body_too_large(self._max))
            return
        counted = _CountedBody(receive, send, self._max)
        await self._app(scope, counted.receive, counted.send)


class _CountedBody:
    """The receive and send of one request whose body is counted as it is read."""

    def __init__(self, receive: Any, send: Any, limit: int) -> None:
        self._receive = receive
        self._send = send
        self._limit = limit
        self._read = 0
        self._over = False

    async def receive(self) -> dict:
        message = await self._receive()
        if message["type"] == "http.request":
            self._read += len(message.get("body", b""))
            if self._read > self._limit:
                self._over = True
                raise body_too_large(self._limit)
        return message

    async def send(self, message: dict) -> None:
        if self._over and message["type"] == "http.response.start":
            # The rest of the body is still on its way: close rather than read it.
            headers = [*message.get("headers", ()), (b"connection", b"close")]
            message = {**message, "headers": headers}
        await self._send(message)


def _content_length(scope: dict) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            # uvicorn's parser has already refused a malformed value.
            return int(value) if value.isdigit() else None
    return None


async def _refuse(send: Any, error: ProtocolError) -> None:
    body = error.frame().encode()
    await send({
        "type": "http.response.start",
        "status": error.status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ],
    })
    await send({"type": "http.response.body", "body": body})

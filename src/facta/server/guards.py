"""ASGI guards that run before routing: the Host allow-list and the request body limit.

Both answer with the same JSON error body as the routes, and both work on the raw ASGI stream,
so a chunked body without ``Content-Length`` is counted as it arrives.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send


async def send_error(send: Send, status: int, code: str, detail: str) -> None:
    body = json.dumps({"error": code, "detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class HostAllowList:
    """Refuse requests whose ``Host`` header names a host the server does not serve.

    A page on ``evil.example`` that rebinds its DNS name to 127.0.0.1 still sends
    ``Host: evil.example``, so it is refused here even though it reached the loopback port.
    """

    def __init__(self, app: ASGIApp, hosts: frozenset[str]) -> None:
        self.app = app
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        raw = _header(scope, b"host")
        name = _host_name(raw)
        if name in self.hosts:
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await send_error(
            send,
            400,
            "host_not_allowed",
            f"Host header {raw!r} is not served here: expected one of {sorted(self.hosts)}",
        )


class BodyLimit:
    """Answer 413 to a request body over ``limit`` bytes, counted as it streams in.

    The body is read up to the limit before the route runs (routes need it whole anyway), then
    replayed; afterwards ``receive`` is passed through, so a live stream still learns of the
    client's disconnect.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await send_error(send, 413, "content_too_large", self._detail(f"{declared} bytes"))
            return
        chunks: list[bytes] = []
        size = 0
        first_other: Message | None = None
        while True:
            message = await receive()
            if message["type"] != "http.request":
                first_other = message
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await send_error(
                    send, 413, "content_too_large", self._detail(f"more than {self.limit} bytes")
                )
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(b"".join(chunks), first_other, receive), send)

    def _detail(self, found: str) -> str:
        return f"request body too large: the limit is {self.limit} bytes, found {found}"


def _replay(body: bytes, pending: Message | None, receive: Receive) -> Receive:
    delivered = False

    async def replayed() -> Message:
        nonlocal delivered, pending
        if not delivered:
            delivered = True
            if pending is None:
                return {"type": "http.request", "body": body, "more_body": False}
        if pending is not None:
            message, pending = pending, None
            return message
        return await receive()

    return replayed


def _header(scope: Scope, name: bytes) -> str | None:
    headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


def _host_name(raw: Any) -> str | None:
    if not isinstance(raw, str) or not raw:
        return None
    host = raw.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end > 0 else None
    return host.rsplit(":", 1)[0] if ":" in host else host

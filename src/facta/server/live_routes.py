"""Live routes over Server-Sent Events: the log as it is written (later: live view queries).

Protocol of ``GET /log/live``: each event is an SSE message ``event: log`` whose ``id`` is its
log position and whose data is the event as JSON. ``event: progress`` (id = the position up to
which the stream is complete) comes when the stream has been idle for the heartbeat interval.
``event: behind`` means the client fell too far behind and the server closed the stream: it
reconnects with ``Last-Event-ID`` (EventSource does so by itself) and loses nothing.
``event: closing`` means the server stopped following the log (shutting down); the same applies.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.types import Receive, Scope, Send

from facta.server.auth import Access, requires
from facta.server.live import LiveMessage, LiveSource, LogFilter, LogStream, heartbeat
from facta.server.problems import ApiError, unavailable
from facta.server.state import ConnectionLimits, server_state
from facta.server.tokens import Principal

router = APIRouter(tags=["live"])

RECONNECT_MS = 1000


class _LiveResponse(EventSourceResponse):
    """An SSE response that gives its connection slot back however the stream ends."""

    def __init__(
        self, messages: AsyncIterator[ServerSentEvent], limits: ConnectionLimits, who: str
    ) -> None:
        super().__init__(messages, headers={"Cache-Control": "no-store"})
        self._limits = limits
        self._who = who

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._limits.release(self._who)


@router.get(
    "/log/live",
    summary="Follow the log over Server-Sent Events (resumable with Last-Event-ID)",
    response_class=EventSourceResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def live_log(
    request: Request,
    principal: Annotated[Principal, requires(Access.READ)],
    after: Annotated[int, Query(ge=0, le=2**62, description="start after this position")] = 0,
    type: Annotated[list[str] | None, Query(description="event types (repeatable)")] = None,
    prefix: Annotated[str | None, Query(description="stream name prefix")] = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> EventSourceResponse:
    state = server_state(request)
    if not state.feed.running:
        raise unavailable("live_unavailable", "the live log feed is not running", 1)
    start = _resume_position(last_event_id, after)
    source = LogStream(state.feed, LogFilter(frozenset(type or ()), prefix or None), start)
    state.connections.acquire(principal.name)
    try:
        return _LiveResponse(
            _sse(source, state.config.sse_heartbeat), state.connections, principal.name
        )
    except BaseException:
        state.connections.release(principal.name)
        raise


def _resume_position(last_event_id: str | None, after: int) -> int:
    if last_event_id is None or not last_event_id.strip():
        return after
    text = last_event_id.strip()
    if not text.isdigit() or len(text) > 18:
        raise ApiError(
            400,
            "invalid_last_event_id",
            f"Last-Event-ID must be a log position (a non-negative integer), found {text[:40]!r}",
        )
    return int(text)


async def _sse(source: LiveSource, interval: float) -> AsyncIterator[ServerSentEvent]:
    first = True
    async for message in heartbeat(source, interval):
        yield _to_sse(message, retry=RECONNECT_MS if first else None)
        first = False


def _to_sse(message: LiveMessage, retry: int | None) -> ServerSentEvent:
    identifier = None if message.position is None else str(message.position)
    return ServerSentEvent(data=message.data, event=message.event, id=identifier, retry=retry)

"""Live routes over Server-Sent Events: the log as it is written, and live view queries.

Protocol of ``GET /log/live``: each event is an SSE message ``event: log`` whose ``id`` is its
log position and whose data is the event as JSON. ``event: progress`` (id = the position up to
which the stream is complete) comes when the stream has been idle for the heartbeat interval.
``event: behind`` means the client fell too far behind and the server closed the stream: it
reconnects with ``Last-Event-ID`` (EventSource does so by itself) and loses nothing.
``event: closing`` means the server stopped following the log (shutting down); the same applies.

Protocol of ``GET /live/views/{name}/{shape}`` (see :mod:`facta.server.live_views`): a
``snapshot`` of the query's rows, then ``update`` messages ``{position, view_hash, upsert,
delete}`` (ids = view positions), ``reset`` + a new ``snapshot`` after a rebuild or a definition
change, ``progress`` when idle. A payload split into parts (``part``/``parts`` in its data) has
the id on its last part only. ``Last-Event-ID`` resumes with one coalesced ``update``. Updates
come as soon as the view commits while the client keeps up, coalesced at most ``live_max_rate``
times a second once it falls behind, or at most ``max_rate`` times a second if it asks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.types import Receive, Scope, Send

from facta.server.auth import Access, requires
from facta.server.live import LiveMessage, LiveSource, LogFilter, LogStream, heartbeat_batches
from facta.server.live_views import LiveViewStream
from facta.server.problems import ApiError, unavailable
from facta.server.state import ConnectionLimits, server_state
from facta.server.tokens import Principal
from facta.server.view_query import ViewQuery, build_query
from facta.server.view_routes import (
    AsOfPosition,
    AsOfTime,
    KnownAt,
    MinPosition,
    ReadingOptions,
    ShapeName,
    ShapeParameters,
    Timeout,
    ViewName,
    read_view,
    with_as_of_time,
)

router = APIRouter(tags=["live"])

RECONNECT_MS = 1000

MaxRate = Annotated[
    float | None,
    Query(
        gt=0,
        le=1000,
        description="at most this many messages a second (more changes coalesce); default: "
        "each update as soon as the view commits while the client keeps up",
    ),
]


class _LiveResponse(EventSourceResponse):
    """An SSE response that gives its connection slot back however the stream ends."""

    def __init__(
        self,
        messages: AsyncIterator[bytes],
        limits: ConnectionLimits,
        who: str,
        *more: ConnectionLimits,
    ) -> None:
        super().__init__(messages, headers={"Cache-Control": "no-store"})
        self._limits = (limits, *more)
        self._who = who

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            for limits in self._limits:
                limits.release(self._who)


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
    resumed = _resume_position(last_event_id, after)
    start = after if resumed is None else resumed
    source = LogStream(state.feed, LogFilter(frozenset(type or ()), prefix or None), start)
    state.connections.acquire(principal.name)
    try:
        return _LiveResponse(
            _sse(source, state.config.sse_heartbeat), state.connections, principal.name
        )
    except BaseException:
        state.connections.release(principal.name)
        raise


@router.get(
    "/live/views/{name}/{shape}",
    summary="Follow a view query over Server-Sent Events: snapshot, then positioned diffs",
    response_class=EventSourceResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def live_view(
    request: Request,
    principal: Annotated[Principal, requires(Access.READ)],
    name: ViewName,
    shape: ShapeName,
    given: ShapeParameters,
    min_position: MinPosition = None,
    timeout: Timeout = None,
    as_of_position: AsOfPosition = None,
    as_of_time: AsOfTime = None,
    known_at: KnownAt = None,
    max_rate: MaxRate = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> EventSourceResponse:
    state = server_state(request)
    for parameter, value in (("as_of_position", as_of_position), ("known_at", known_at)):
        if value is not None:
            raise ApiError(
                400,
                "bad_parameter",
                f"{parameter}: a live query follows the view; ask GET /views/{name}/{shape} "
                "for a past state",
                parameter=parameter,
            )
    query: ViewQuery = with_as_of_time(build_query(name, shape, given), as_of_time)
    resume = _resume_position(last_event_id, None)
    # The checks of the request/response route (404, 400, min_position's wait and 504).
    await read_view(state, query, ReadingOptions(min_position=min_position, timeout=timeout or 5.0))
    state.connections.acquire(principal.name)
    try:
        state.live_limits.acquire(principal.name)
    except BaseException:
        state.connections.release(principal.name)
        raise
    try:
        live, client = await state.live_views.attach(query)
        source = LiveViewStream(state.live_views, live, client, resume, max_rate=max_rate)
        return _LiveResponse(
            _sse(source, state.config.sse_heartbeat),
            state.connections,
            principal.name,
            state.live_limits,
        )
    except BaseException:
        state.connections.release(principal.name)
        state.live_limits.release(principal.name)
        raise


def _resume_position(last_event_id: str | None, after: int | None) -> int | None:
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


async def _sse(source: LiveSource, interval: float) -> AsyncIterator[bytes]:
    """Each batch of messages as one write (a batch of log events is one chunk on the wire)."""
    first = True
    async for batch in heartbeat_batches(source, interval):
        parts = []
        for message in batch:
            parts.append(_to_sse(message, retry=RECONNECT_MS if first else None).encode())
            first = False
        yield b"".join(parts)


def _to_sse(message: LiveMessage, retry: int | None) -> ServerSentEvent:
    identifier = None if message.position is None else str(message.position)
    return ServerSentEvent(data=message.data, event=message.event, id=identifier, retry=retry)

"""Several live view queries over one Server-Sent Events connection, for the dashboard page.

A browser keeps at most six HTTP/1.1 connections per host, and an ``EventSource`` holds one for
as long as it is open: a page of nine panels, each on its own ``GET /live/views/...``, would
leave three panels — and every other request of the page — waiting. ``GET /live/queries``
carries many live queries on one connection: each ``q`` parameter is one query written as the
path and query string of the live route (``flights/box?measure=delay_q&group_by=carrier``),
parsed and checked exactly as that route does, and joined to the same shared computations.

Messages are those of ``GET /live/views`` (``snapshot``, ``update``, ``reset``, ``closing``),
each with ``"query": i`` (the index of its ``q``) added to its data. A message's id is the
position every query of the connection has been sent up to; resuming with ``Last-Event-ID``
resumes every query from there, which may send a query again changes it already had — harmless,
as updates carry whole rows (upserts) and keys (deletes). ``progress`` comes when all are idle.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Annotated, Any
from urllib.parse import parse_qs, unquote

from fastapi import APIRouter, Header, Query, Request
from sse_starlette import EventSourceResponse

from facta.server.auth import Access, requires
from facta.server.live import LiveMessage
from facta.server.live_routes import _LiveResponse, _resume_position, _sse
from facta.server.live_views import LiveClient, LiveViewStream
from facta.server.problems import ApiError
from facta.server.state import server_state
from facta.server.tokens import Principal
from facta.server.view_query import ViewQuery, build_query
from facta.server.view_routes import ReadingOptions, read_view

router = APIRouter(tags=["live"])

MAX_QUERIES = 32
_FLAGS = ("per_bucket", "ascending")
_SINGLE = ("from", "to", "group_by", "every", "by", "k", "measure", "column", "x", "y")


def parse_query(index: int, text: str) -> ViewQuery:
    """One ``q``: ``VIEW/SHAPE?PARAMETERS`` into the query the live route would build."""
    path, _, query_string = text.partition("?")
    view, slash, shape = path.partition("/")
    if not slash or not view or not shape or "/" in shape:
        raise ApiError(
            400,
            "bad_parameter",
            f"q[{index}]: expected VIEW/SHAPE?PARAMETERS, found {text[:80]!r}",
            parameter="q",
        )
    raw = parse_qs(query_string, keep_blank_values=True)
    given: dict[str, Any] = {}
    for name, values in raw.items():
        if name == "where":
            given["where"] = values
        elif name in _FLAGS:
            given[name] = _flag(index, name, values[-1])
        elif name == "k":
            if not values[-1].isdigit():
                raise ApiError(
                    400, "bad_parameter", f"q[{index}]: k must be a whole number", parameter="q"
                )
            given["k"] = int(values[-1])
        elif name in _SINGLE:
            given[name] = values[-1]
        else:
            raise ApiError(
                400,
                "bad_parameter",
                f"q[{index}]: a live query takes no parameter {name!r} here",
                parameter="q",
            )
    return build_query(unquote(view), unquote(shape), given)


def _flag(index: int, name: str, value: str) -> bool:
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise ApiError(400, "bad_parameter", f"q[{index}]: {name} must be true or false", parameter="q")


class MultiplexedStream:
    """The messages of several :class:`LiveViewStream` on one connection (a ``LiveSource``)."""

    def __init__(self, streams: Sequence[LiveViewStream]) -> None:
        self.streams = list(streams)
        self.sent = [0] * len(streams)

    def progress(self) -> int:
        return min(stream.progress() for stream in self.streams)

    async def batches(self) -> AsyncIterator[list[LiveMessage]]:
        # Bounded: each pump waits for room; the end markers always fit.
        queue: asyncio.Queue[tuple[int, list[LiveMessage] | None]] = asyncio.Queue(
            maxsize=64 + len(self.streams)
        )

        async def pump(index: int, stream: LiveViewStream) -> None:
            try:
                batches = stream.batches()
                try:
                    async for batch in batches:
                        await queue.put((index, batch))
                finally:
                    await batches.aclose()  # type: ignore[attr-defined]
            finally:
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait((index, None))

        tasks = [
            asyncio.create_task(pump(i, s), name=f"facta-live-query-{i}")
            for i, s in enumerate(self.streams)
        ]
        try:
            while True:
                index, batch = await queue.get()
                if batch is None:
                    # One query ended (server closing, view dropped) or failed: end the
                    # connection; the client reconnects and resumes every query.
                    failed = tasks[index]
                    if failed.done() and not failed.cancelled():
                        error = failed.exception()
                        if error is not None:
                            raise error
                    return
                tagged = []
                for message in batch:
                    if message.position is not None:
                        self.sent[index] = message.position
                    position = min(self.sent) if message.position is not None else None
                    data = _tagged(index, message.data)
                    tagged.append(LiveMessage(message.event, data, position or None))
                yield tagged
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task


def _tagged(index: int, data: str) -> str:
    """``{"query": index, ...data}``: the data of every message is a JSON object."""
    rest = data.strip()[1:].lstrip()
    return f'{{"query":{index}' + ("" if rest.startswith("}") else ",") + rest


@router.get(
    "/live/queries",
    summary="Follow several view queries over one Server-Sent Events connection",
    response_class=EventSourceResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def live_queries(
    request: Request,
    principal: Annotated[Principal, requires(Access.READ)],
    q: Annotated[
        list[str],
        Query(description="one live query each: VIEW/SHAPE?PARAMETERS (URL-encoded)"),
    ],
    last_event_id: Annotated[str | None, Header()] = None,
) -> EventSourceResponse:
    state = server_state(request)
    if not 1 <= len(q) <= MAX_QUERIES:
        raise ApiError(
            400,
            "bad_parameter",
            f"q: expected 1 to {MAX_QUERIES} queries, found {len(q)}",
            parameter="q",
        )
    queries = [parse_query(index, text) for index, text in enumerate(q)]
    resume = _resume_position(last_event_id, None)
    for query in queries:  # the checks of the request/response route: 404, 400
        await read_view(state, query, ReadingOptions())
    who = principal.name
    state.connections.acquire(who)
    held = 0
    clients: list[LiveClient] = []
    try:
        for _ in queries:
            state.live_limits.acquire(who)
            held += 1
        streams = []
        for query in queries:
            live, client = await state.live_views.attach(query)
            clients.append(client)
            # A page redraws its charts: it gets at most the server's live rate per query.
            rate = state.config.live_max_rate
            streams.append(LiveViewStream(state.live_views, live, client, resume, max_rate=rate))
        source = MultiplexedStream(streams)
        limits = [state.live_limits] * held
        return _LiveResponse(
            _sse(source, state.config.sse_heartbeat), state.connections, who, *limits
        )
    except BaseException:
        for client in clients:
            state.live_views.detach(client)
        for _ in range(held):
            state.live_limits.release(who)
        state.connections.release(who)
        raise

"""HTTP routes of the log: append, read a stream, read the log, look up a key, stats."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from facta.log.event import (
    AppendResult,
    Expectation,
    NewEvent,
    StreamAppend,
    parse_expectation,
)
from facta.server.auth import Access, requires
from facta.server.live import event_json
from facta.server.problems import LOG_ERRORS, ApiError, from_log_error
from facta.server.state import server_state

router = APIRouter(prefix="/log", tags=["log"])
_encoder = msgspec.json.Encoder()

ExpectIn = (
    Annotated[int, Field(ge=0, strict=True)]
    | Literal["any", "none", "no_stream", "exists", "stream_exists"]
)


StreamName = Annotated[
    str, Path(description="a stream", openapi_examples={"a stream": {"value": "account-1"}})
]


class EventIn(BaseModel):
    """An event to append. ``id`` is generated (UUIDv7) unless given."""

    model_config = ConfigDict(extra="forbid")
    type: str
    data: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    schema_version: Annotated[int, Field(ge=1, strict=True)] = 1
    id: UUID | None = None


class AppendIn(BaseModel):
    """Events for one stream, appended atomically if ``expect`` holds.

    ``expect``: a version (0 = the stream has no events), ``any``, ``none`` or ``exists``.
    ``key``: an idempotency key; the same key with the same request returns the first result.
    ``outcome``: a JSON value recorded with the key (needs ``key``).
    """

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"events": [{"type": "Deposited", "data": {"amount": 10}}]}]
        },
    )
    events: list[EventIn]
    expect: ExpectIn = "any"
    key: str | None = None
    outcome: Any = None


class StreamAppendIn(BaseModel):
    """One stream's part of a multi-stream append; no events + a version = a read check."""

    model_config = ConfigDict(extra="forbid")
    stream: str
    events: list[EventIn] = Field(default_factory=list)
    expect: ExpectIn = "any"


class AppendManyIn(BaseModel):
    """Several streams, each with its own expectation: all or nothing."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "streams": [
                        {"stream": "account-1", "events": [{"type": "Deposited"}]},
                        {"stream": "account-2", "events": [{"type": "Withdrawn"}]},
                    ]
                }
            ]
        },
    )
    streams: list[StreamAppendIn]
    key: str | None = None
    outcome: Any = None


class StreamWrittenOut(BaseModel):
    stream: str
    version: int
    first_position: int | None
    last_position: int | None


class AppendOut(BaseModel):
    first_position: int | None
    last_position: int | None
    streams: list[StreamWrittenOut]
    key: str | None
    outcome: Any
    replayed: bool


class EventOut(BaseModel):
    position: int
    stream: str
    version: int
    type: str
    schema_version: int
    id: str
    recorded_at: str
    data: dict[str, Any]
    metadata: dict[str, Any]


class EventsOut(BaseModel):
    events: list[EventOut]
    last_position: int = Field(description="position of the last event returned, else `after`")


class StreamOut(BaseModel):
    stream: str
    events: list[EventOut]


class OutcomeOut(BaseModel):
    key: str
    result: AppendOut
    outcome: Any
    recorded_at: str


@router.post(
    "/streams/{stream}",
    summary="Append events to one stream",
    response_model=None,
    responses={200: {"model": AppendOut}},
    dependencies=[requires(Access.APPEND)],
)
async def append(stream: StreamName, body: AppendIn, request: Request) -> Response:
    state = server_state(request)
    try:
        result = await state.log.append(
            stream,
            [_new_event(e) for e in body.events],
            expect=_expectation(body.expect),
            key=body.key,
            outcome=body.outcome,
        )
    except LOG_ERRORS as exc:
        raise from_log_error(exc, retry_after=state.config.retry_after) from None
    return _json(_result_json(result))


@router.post(
    "/appends",
    summary="Append to several streams atomically",
    response_model=None,
    responses={200: {"model": AppendOut}},
    dependencies=[requires(Access.APPEND)],
)
async def append_many(body: AppendManyIn, request: Request) -> Response:
    state = server_state(request)
    try:
        entries = [
            StreamAppend(s.stream, tuple(_new_event(e) for e in s.events), _expectation(s.expect))
            for s in body.streams
        ]
        result = await state.log.append_many(entries, key=body.key, outcome=body.outcome)
    except LOG_ERRORS as exc:
        raise from_log_error(exc, retry_after=state.config.retry_after) from None
    return _json(_result_json(result))


@router.get(
    "/streams/{stream}",
    summary="Read one stream, forward or backward",
    response_model=None,
    responses={200: {"model": StreamOut}},
    dependencies=[requires(Access.READ)],
)
async def read_stream(
    stream: StreamName,
    request: Request,
    from_version: Annotated[
        int | None, Query(ge=1, le=2**62, description="first version (last when backward)")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    direction: Literal["forward", "backward"] = "forward",
) -> Response:
    state = server_state(request)
    backward = direction == "backward"
    start = from_version if from_version is not None else (2**62 if backward else 1)
    try:
        events = await state.log.read_stream(
            stream, from_version=start, limit=limit, backward=backward
        )
    except LOG_ERRORS as exc:
        raise from_log_error(exc, retry_after=state.config.retry_after) from None
    return _json({"stream": stream, "events": [event_json(e) for e in events]})


@router.get(
    "/events",
    summary="Read the whole log after a position, optionally filtered",
    response_model=None,
    responses={200: {"model": EventsOut}},
    dependencies=[requires(Access.READ)],
)
async def read_all(
    request: Request,
    after: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    type: Annotated[list[str] | None, Query(description="event types (repeatable)")] = None,
    prefix: Annotated[str | None, Query(description="stream name prefix")] = None,
) -> Response:
    state = server_state(request)
    try:
        events = await state.log.read_all(
            after=after, limit=limit, types=type or None, stream_prefix=prefix or None
        )
    except LOG_ERRORS as exc:
        raise from_log_error(exc, retry_after=state.config.retry_after) from None
    last = events[-1].position if events else after
    return _json({"events": [event_json(e) for e in events], "last_position": last})


@router.get(
    "/keys/{key:path}",
    summary="The outcome recorded with an idempotency key",
    response_model=None,
    responses={200: {"model": OutcomeOut}},
    dependencies=[requires(Access.READ)],
)
async def lookup(
    key: Annotated[str, Path(openapi_examples={"a key": {"value": "checkout-2024-0001"}})],
    request: Request,
) -> Response:
    state = server_state(request)
    try:
        record = await state.log.lookup(key)
    except LOG_ERRORS as exc:
        raise from_log_error(exc, retry_after=state.config.retry_after) from None
    if record is None:
        raise ApiError(404, "unknown_key", f"idempotency key {key!r} was never used", key=key)
    return _json(
        {
            "key": record.key,
            "result": _result_json(record.result),
            "outcome": record.outcome,
            "recorded_at": record.recorded_at.isoformat(),
        }
    )


@router.get(
    "/stats",
    summary="Counts, sizes, durability and process metrics of the log and the server",
    dependencies=[requires(Access.READ)],
)
async def stats(request: Request) -> Response:
    state = server_state(request)
    try:
        log_stats = await state.log.stats()
    except LOG_ERRORS as exc:
        raise from_log_error(exc, retry_after=state.config.retry_after) from None
    server = {
        "live_position": state.feed.position,
        "live_subscribers": state.feed.subscribers,
        "live_connections": dict(state.connections.open),
        "live_views": state.live_views.stats(),
    }
    return _json({"log": msgspec.to_builtins(log_stats), "server": server})


def _new_event(event: EventIn) -> NewEvent:
    return NewEvent(
        type=event.type,
        data=event.data,
        metadata=event.metadata,
        schema_version=event.schema_version,
        id=event.id,
    )


def _expectation(value: int | str) -> Expectation:
    return value if isinstance(value, int) else parse_expectation(value)


def _result_json(result: AppendResult) -> Any:
    return msgspec.to_builtins(result)


def _json(value: Any) -> Response:
    return Response(_encoder.encode(value), media_type="application/json")

"""HTTP routes of the views: list them, query them in every shape, SQL, processors.

``GET /views/{name}/{shape}`` answers from the view's committed state, read on a reader thread.
``min_position`` waits (asynchronously, up to ``timeout`` seconds) until the view has applied
that position: read your own writes. ``as_of_time`` keeps only buckets ended by then;
``as_of_position`` and ``known_at`` replay the log into a private, in-memory copy of the view
(exactly the state at that position, or only the events recorded by then) — a rebuild's cost.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import msgspec
from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from facta.entities.tracking import processor_statuses
from facta.server.auth import Access, requires
from facta.server.problems import ApiError
from facta.server.state import ServerState, server_state
from facta.server.view_query import (
    SHAPES,
    QueryResult,
    ViewQuery,
    build_query,
    json_value,
    parse_time,
    run,
)
from facta.views.compile import compile_view
from facta.views.definition import ViewDefinition
from facta.views.engine import state_at, state_known_at
from facta.views.query import ViewNotFound, open_snapshot
from facta.views.sql import SqlRefused, SqlTimeout, run_sql
from facta.views.store import ViewStore

router = APIRouter(tags=["views"])
_encoder = msgspec.json.Encoder()

MAX_TIMEOUT = 30.0
SQL_ROW_CAP = 10_000
SQL_TIME_LIMIT = 10.0


class ReadingOptions(msgspec.Struct, frozen=True):
    """How to read a view: wait for a position, or read it as of a position or a time."""

    min_position: int | None = None
    timeout: float = 5.0
    as_of_position: int | None = None
    known_at: int | None = None


async def read_view(state: ServerState, query: ViewQuery, options: ReadingOptions) -> QueryResult:
    """Answer ``query`` as ``options`` ask (404 unknown view, 400 bad names, 504 timeout,
    503 for a declared view whose first build has not committed within the timeout)."""
    views = state.views
    if not views.known(query.view):
        raise ApiError(
            404,
            "unknown_view",
            f"no view named {query.view!r} (views: {', '.join(sorted(views.marks)) or 'none'})",
            view=query.view,
        )
    if query.view not in views.marks:
        # Declared in the project, not built yet: its first build is under way, so wait for it
        # (503 with Retry-After if it takes longer than the request's timeout).
        await views.wait_built(query.view, options.timeout, state.config.retry_after)
    if options.min_position is not None:
        await views.wait_for(query.view, options.min_position, options.timeout)
    if options.as_of_position is not None or options.known_at is not None:
        head = await state.log.head()
        if options.as_of_position is not None and options.as_of_position > head:
            raise ApiError(
                400,
                "bad_parameter",
                f"as_of_position: the log ends at {head}, found {options.as_of_position}",
                parameter="as_of_position",
            )
    log_path = views.log_path

    def work(store: ViewStore) -> QueryResult:
        if options.as_of_position is None and options.known_at is None:
            return run(open_snapshot(store, query.view), query)
        current = store.current(query.view)
        if current is None:
            raise ViewNotFound(query.view)
        view = compile_view(ViewDefinition.model_validate(current.definition))
        if options.as_of_position is not None:
            replay = state_at(log_path, view, options.as_of_position)
        else:
            assert options.known_at is not None
            replay = state_known_at(log_path, view, datetime.fromtimestamp(options.known_at, UTC))
        try:
            result = run(open_snapshot(replay, query.view), query)
        finally:
            replay.close()
        # known_at replays a variant (with a recorded-time filter): name the view's own hash.
        return dataclasses.replace(result, definition_hash=current.definition_hash)

    try:
        return await views.readers.call(work)
    except ViewNotFound:
        raise ApiError(
            404, "unknown_view", f"view {query.view!r} is not built yet", view=query.view
        ) from None


def reading_options(
    min_position: int | None,
    timeout: float | None,
    as_of_position: int | None,
    known_at: str | None,
) -> ReadingOptions:
    if as_of_position is not None and known_at is not None:
        raise ApiError(
            400,
            "bad_parameter",
            "as_of_position: give as_of_position or known_at, not both",
            parameter="as_of_position",
        )
    return ReadingOptions(
        min_position=min_position,
        timeout=5.0 if timeout is None else timeout,
        as_of_position=as_of_position,
        known_at=parse_time("known_at", known_at),
    )


Where = Annotated[
    list[str] | None,
    Query(description="dimension:value (repeatable; the same dimension twice = IN list)"),
]
From = Annotated[
    str | None,
    Query(alias="from", description="event time, inclusive: ISO-8601 with offset or epoch s"),
]
To = Annotated[str | None, Query(description="event time, exclusive")]
GroupBy = Annotated[
    str | None, Query(description="comma list of dimensions; empty = none; absent = all")
]
Every = Annotated[str | None, Query(description="series/box bucket width: 1h, 1d, 1w, 1mo")]
PerBucket = Annotated[bool | None, Query(description="groups/top/box: one row per bucket")]
By = Annotated[str | None, Query(description="top: the output column to rank by")]
K = Annotated[int | None, Query(ge=1, le=10_000, description="top: how many rows")]
Ascending = Annotated[bool | None, Query(description="top: smallest first")]
MeasureName = Annotated[str | None, Query(description="box: quantiles; ellipse: covariance")]
Column = Annotated[str | None, Query(description="heatmap: the output column")]
X = Annotated[str | None, Query(description="heatmap: dimension on x")]
Y = Annotated[str | None, Query(description="heatmap: dimension on y")]
MinPosition = Annotated[
    int | None, Query(ge=0, le=2**62, description="wait until the view applied this position")
]
Timeout = Annotated[
    float | None, Query(ge=0, le=MAX_TIMEOUT, description="seconds to wait (default 5)")
]
AsOfPosition = Annotated[
    int | None, Query(ge=0, le=2**62, description="the view exactly as at this log position")
]
AsOfTime = Annotated[str | None, Query(description="only buckets ended by this event time")]
KnownAt = Annotated[str | None, Query(description="only events the log had recorded by this time")]


def shape_parameters(
    where: Where = None,
    from_: From = None,
    to: To = None,
    group_by: GroupBy = None,
    every: Every = None,
    per_bucket: PerBucket = None,
    by: By = None,
    k: K = None,
    ascending: Ascending = None,
    measure: MeasureName = None,
    column: Column = None,
    x: X = None,
    y: Y = None,
) -> dict[str, Any]:
    """The shape parameters that were present in the URL (a dependency of both query routes)."""
    given: dict[str, Any] = {
        "where": where,
        "from": from_,
        "to": to,
        "group_by": group_by,
        "every": every,
        "per_bucket": per_bucket,
        "by": by,
        "k": k,
        "ascending": ascending,
        "measure": measure,
        "column": column,
        "x": x,
        "y": y,
    }
    return {name: value for name, value in given.items() if value is not None}


ShapeParameters = Annotated[dict[str, Any], Depends(shape_parameters)]


ViewName = Annotated[
    str, Path(description="the view", openapi_examples={"a view": {"value": "delays"}})
]
ShapeName = Annotated[
    str,
    Path(
        description=f"one of {', '.join(SHAPES)}",
        openapi_examples={"kpi": {"value": "kpi"}, "groups": {"value": "groups"}},
    ),
]


class ColumnOut(BaseModel):
    name: str
    type: str


class QueryOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    view: str
    shape: str
    position: int
    definition_hash: str
    key: list[str]
    columns: list[ColumnOut]
    rows: list[dict[str, Any]]


@router.get(
    "/views/{name}/{shape}",
    summary="Query a view in one shape (kpi, groups, series, top, box, heatmap, ellipse)",
    response_model=None,
    responses={200: {"model": QueryOut}},
    dependencies=[requires(Access.READ)],
)
async def query_view(
    request: Request,
    name: ViewName,
    shape: ShapeName,
    given: ShapeParameters,
    min_position: MinPosition = None,
    timeout: Timeout = None,
    as_of_position: AsOfPosition = None,
    as_of_time: AsOfTime = None,
    known_at: KnownAt = None,
) -> Response:
    query = build_query(name, shape, given)
    query = with_as_of_time(query, as_of_time)
    options = reading_options(min_position, timeout, as_of_position, known_at)
    result = await read_view(server_state(request), query, options)
    return _json(result.body())


def with_as_of_time(query: ViewQuery, as_of_time: str | None) -> ViewQuery:
    moment = parse_time("as_of_time", as_of_time)
    if moment is None:
        return query
    return dataclasses.replace(query, as_of_time=moment)


class ViewOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    description: str
    position: int
    lag: int
    definition_hash: str
    cells: int
    rejected_events: int
    rejected_values: dict[str, int]
    unmatched: dict[str, int]
    maintainer: str | None


@router.get(
    "/views",
    summary="Every view: position, lag, size, rejects and misses, who maintains it",
    response_model=None,
    responses={200: {"model": list[ViewOut]}},
    dependencies=[requires(Access.READ)],
)
async def list_views(request: Request) -> Response:
    state = server_state(request)
    head = await state.log.head()

    def work(store: ViewStore) -> list[dict[str, Any]]:
        out = []
        for info in store.views():
            cells, _ = store.size(info.view, info.generation)
            definition = info.definition
            values = info.rejected.get("values", {})
            measures = []
            view = compile_view(ViewDefinition.model_validate(definition))
            for measure in view.measures:
                measures.append(
                    {
                        "name": measure.name,
                        "kind": measure.kind,
                        "columns": list(measure.output_types()),
                    }
                )
            bucket = definition.get("bucket")
            out.append(
                {
                    "name": info.view,
                    "description": definition.get("description", ""),
                    "position": info.checkpoint,
                    "lag": max(head - info.checkpoint, 0),
                    "definition_hash": info.definition_hash,
                    "generation": info.generation,
                    "cells": cells,
                    "rejected_events": int(info.rejected.get("events", {}).get("count", 0)),
                    "rejected_values": {f: int(v["count"]) for f, v in values.items()},
                    "unmatched": {t: int(c) for t, c in info.rejected.get("unmatched", {}).items()},
                    "maintainer": store.holder(info.view),
                    "dimensions": list(view.definition.dimensions),
                    "bucket": None
                    if bucket is None
                    else {"width": bucket["width"], "timezone": bucket.get("timezone", "UTC")},
                    "measures": measures,
                }
            )
        return out

    views = await state.views.readers.call(work)
    maintainers = state.views.maintainers
    if maintainers is not None:
        for view in views:
            status = maintainers.status(view["name"])
            if status is not None:
                view["maintained"] = {"state": status.state, "error": status.error}
    return _json(views)


class SqlIn(BaseModel):
    """One read-only SELECT over the views (their cells, finalized and mergeable columns)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"sql": "SELECT count(*) AS cells FROM delays"}]},
    )
    sql: Annotated[str, Field(min_length=1, max_length=100_000)]
    row_cap: Annotated[int, Field(ge=1, le=SQL_ROW_CAP)] = SQL_ROW_CAP


@router.post(
    "/sql",
    summary="Run one read-only SELECT over the views in a sandbox (like facta sql)",
    dependencies=[requires(Access.READ)],
)
async def sql(body: SqlIn, request: Request) -> Response:
    state = server_state(request)

    def work(store: ViewStore) -> Any:
        return run_sql(store, body.sql, row_cap=body.row_cap, time_limit=SQL_TIME_LIMIT)

    try:
        table = await state.views.readers.call(work)
    except SqlRefused as exc:
        raise ApiError(400, "sql_refused", str(exc)) from None
    except SqlTimeout as exc:
        raise ApiError(504, "sql_timeout", str(exc)) from None
    utc = ZoneInfo("UTC")
    rows = [{k: json_value(v, utc) for k, v in row.items()} for row in table.to_pylist()]
    return _json({"columns": table.column_names, "rows": rows})


@router.get(
    "/processors",
    summary="Every processor: state, checkpoint, lag, last error",
    dependencies=[requires(Access.READ)],
)
async def processors(request: Request) -> Response:
    state = server_state(request)
    statuses = await asyncio.to_thread(processor_statuses, state.log)
    running = state.entities.status() if state.entities is not None else {}
    out = []
    for status in statuses:
        item = msgspec.to_builtins(status)
        item["running"] = running.pop(status.name, None)
        out.append(item)
    for name, info in running.items():  # running, but no tracking record yet
        out.append({"name": name, "state": "ok", "checkpoint": 0, "running": info})
    return _json(out)


def _json(value: Any) -> Response:
    return Response(_encoder.encode(value), media_type="application/json")

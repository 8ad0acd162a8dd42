"""A view query as the HTTP API states it: shape, parameters, checks, and its JSON answer.

``ViewQuery`` is the parsed, hashable form of ``GET /views/{name}/{shape}?…`` (live queries with
equal ``ViewQuery`` share one computation). :func:`check` validates the names it mentions
against the view's definition, raising :class:`~facta.server.problems.ApiError` 400 where the
problem is found; :func:`run` reads the view and returns :class:`QueryResult`.
"""

from __future__ import annotations

import dataclasses
import decimal
import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo

import pyarrow as pa

from facta.server.problems import ApiError
from facta.views import calendar, shapes
from facta.views.compile import CompiledView
from facta.views.measures import CoMoments, Quantiles
from facta.views.query import ViewSnapshot

Shape = Literal["kpi", "groups", "series", "top", "box", "heatmap", "ellipse"]
SHAPES: Final[tuple[str, ...]] = ("kpi", "groups", "series", "top", "box", "heatmap", "ellipse")
MAX_K: Final = 10_000

# The parameters each shape takes besides where/from/to and the reading parameters.
_SHAPE_PARAMETERS: Final[dict[str, frozenset[str]]] = {
    "kpi": frozenset(),
    "groups": frozenset({"group_by", "per_bucket"}),
    "series": frozenset({"group_by", "every"}),
    "top": frozenset({"group_by", "per_bucket", "by", "k", "ascending"}),
    "box": frozenset({"group_by", "per_bucket", "every", "measure"}),
    "heatmap": frozenset({"column", "x", "y"}),
    "ellipse": frozenset({"group_by", "measure"}),
}
_REQUIRED: Final[dict[str, tuple[str, ...]]] = {
    "top": ("by",),
    "box": ("measure",),
    "heatmap": ("column", "x", "y"),
    "ellipse": ("measure",),
}


@dataclasses.dataclass(frozen=True, slots=True)
class ViewQuery:
    """One query of a view: everything that decides its rows (not how long to wait)."""

    view: str
    shape: str
    where: tuple[tuple[str, tuple[str, ...]], ...] = ()
    start: int | None = None
    end: int | None = None
    group_by: tuple[str, ...] | None = None
    every: str | None = None
    per_bucket: bool = False
    by: str | None = None
    k: int = 10
    ascending: bool = False
    measure: str | None = None
    column: str | None = None
    x: str | None = None
    y: str | None = None
    as_of_time: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class QueryResult:
    """The JSON answer of a view query (see the HTTP contract)."""

    view: str
    shape: str
    position: int
    definition_hash: str
    key: list[str]
    columns: list[dict[str, str]]
    rows: list[dict[str, Any]]
    # Per row, the last position at which a cell merged into it changed (shapes that say so);
    # not part of the answer: live queries use it to tell rows that changed from rows that
    # were only merged again (a sketch merge is randomised, its values can move a little).
    changed_at: list[int] | None = None

    def body(self) -> dict[str, Any]:
        return {
            "view": self.view,
            "shape": self.shape,
            "position": self.position,
            "definition_hash": self.definition_hash,
            "key": self.key,
            "columns": self.columns,
            "rows": self.rows,
        }

    def row_key(self, row: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(row[name] for name in self.key)


def parse_time(name: str, text: str | None) -> int | None:
    """Event time from ISO-8601 with an offset, or epoch seconds."""
    if text is None or text == "":
        return None
    value = text.strip()
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if math.isfinite(number):
        if abs(number) > 1e11:
            raise ApiError(
                400,
                "bad_parameter",
                f"{name}: epoch seconds out of range, found {value!r}",
                parameter=name,
            )
        return math.floor(number)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ApiError(
            400,
            "bad_parameter",
            f"{name}: expected ISO-8601 with an offset or epoch seconds, found {value[:60]!r}",
            parameter=name,
        ) from None
    if moment.tzinfo is None:
        raise ApiError(
            400,
            "bad_parameter",
            f"{name}: {value!r} has no offset; add one (e.g. 'Z' or '+02:00')",
            parameter=name,
        )
    return int(moment.timestamp())


def parse_where(items: Sequence[str]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """``dimension:value`` items; a repeated dimension becomes an IN list."""
    values: dict[str, list[str]] = {}
    for item in items:
        name, sep, value = item.partition(":")
        if not sep or not name:
            raise ApiError(
                400,
                "bad_parameter",
                f"where: expected 'dimension:value', found {item[:60]!r}",
                parameter="where",
            )
        values.setdefault(name, [])
        if value not in values[name]:
            values[name].append(value)
    return tuple(sorted((name, tuple(sorted(v))) for name, v in values.items()))


def parse_group_by(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    return tuple(part.strip() for part in text.split(",") if part.strip())


def build_query(view: str, shape: str, given: Mapping[str, Any]) -> ViewQuery:
    """The query of ``shape`` over ``view`` from the parameters that were present in the URL."""
    if shape not in SHAPES:
        raise ApiError(
            404,
            "unknown_shape",
            f"no query shape {shape!r} (shapes: {', '.join(SHAPES)})",
            shape=shape,
        )
    allowed = _SHAPE_PARAMETERS[shape]
    for name in sorted(set(given) - {"where", "from", "to"}):
        if name not in allowed:
            raise ApiError(
                400,
                "bad_parameter",
                f"{name}: the {shape} shape does not take this parameter "
                f"(it takes: {', '.join(sorted(allowed | {'where', 'from', 'to'}))})",
                parameter=name,
            )
    for name in _REQUIRED.get(shape, ()):
        if not given.get(name):
            raise ApiError(
                400, "missing_parameter", f"{name}: the {shape} shape needs it", parameter=name
            )
    k = int(given.get("k", 10))
    if not 1 <= k <= MAX_K:
        raise ApiError(400, "bad_parameter", f"k: expected 1..{MAX_K}, found {k}", parameter="k")
    every = given.get("every")
    if every is not None and every not in calendar.WIDTHS:
        raise ApiError(
            400,
            "bad_parameter",
            f"every: expected one of {', '.join(calendar.WIDTHS)}, found {every[:20]!r}",
            parameter="every",
        )
    start = parse_time("from", given.get("from"))
    end = parse_time("to", given.get("to"))
    return ViewQuery(
        view=view,
        shape=shape,
        where=parse_where(given.get("where") or ()),
        start=start,
        end=end,
        group_by=parse_group_by(given.get("group_by")),
        every=every,
        per_bucket=bool(given.get("per_bucket", False)),
        by=given.get("by"),
        k=k,
        ascending=bool(given.get("ascending", False)),
        measure=given.get("measure"),
        column=given.get("column"),
        x=given.get("x"),
        y=given.get("y"),
    )


def _bad(name: str, detail: str) -> ApiError:
    return ApiError(400, "bad_parameter", f"{name}: {detail}", parameter=name)


def _typed_value(view: CompiledView, dimension: str, text: str) -> Any:
    kind = view.kinds.get(dimension)
    if kind == "int":
        try:
            return int(text)
        except ValueError:
            raise _bad("where", f"{dimension} holds integers, found {text[:40]!r}") from None
    if kind == "float":
        try:
            return float(text)
        except ValueError:
            raise _bad("where", f"{dimension} holds numbers, found {text[:40]!r}") from None
    if kind == "bool":
        if text not in ("true", "false"):
            raise _bad("where", f"{dimension} holds true/false, found {text[:40]!r}")
        return text == "true"
    return text


def check(query: ViewQuery, view: CompiledView) -> dict[str, Any]:
    """Validate every name ``query`` mentions against ``view``; return ``where`` with values
    typed as the dimensions are."""
    definition = view.definition
    dims = definition.dimensions
    where: dict[str, Any] = {}
    for name, values in query.where:
        if name not in dims:
            raise _bad(
                "where",
                f"view {view.name!r} has no dimension {name!r} "
                f"(dimensions: {', '.join(dims) or 'none'})",
            )
        typed = [_typed_value(view, name, v) for v in values]
        where[name] = typed if len(typed) > 1 else typed[0]
    for name in query.group_by or ():
        if name not in dims:
            raise _bad(
                "group_by",
                f"view {view.name!r} has no dimension {name!r} "
                f"(dimensions: {', '.join(dims) or 'none'})",
            )
    if query.group_by is not None and len(set(query.group_by)) != len(query.group_by):
        raise _bad("group_by", "a dimension is named twice")
    bucketed = definition.bucket is not None
    needs_bucket = query.shape == "series" or query.per_bucket or query.every is not None
    if needs_bucket and not bucketed:
        raise _bad(
            "per_bucket" if query.per_bucket else "every",
            f"view {view.name!r} has no event-time bucket",
        )
    if query.as_of_time is not None and not bucketed:
        raise _bad("as_of_time", f"view {view.name!r} has no event-time bucket")
    bucket = definition.bucket
    if (
        query.every is not None
        and bucket is not None
        and not calendar.coarser_or_equal(query.every, bucket.width)
    ):
        raise _bad(
            "every", f"{query.every!r} is not a union of the view's {bucket.width!r} buckets"
        )
    if query.every is not None and query.shape == "box" and not query.per_bucket:
        raise _bad("every", "a box query takes every only with per_bucket=true")
    outputs = view.output_types()
    if query.shape == "top" and query.by not in outputs:
        raise _bad(
            "by",
            f"view {view.name!r} has no output column {query.by!r} (columns: {', '.join(outputs)})",
        )
    if query.shape == "heatmap":
        if query.column not in outputs:
            raise _bad(
                "column",
                f"view {view.name!r} has no output column {query.column!r} "
                f"(columns: {', '.join(outputs)})",
            )
        for name, value in (("x", query.x), ("y", query.y)):
            if value not in dims:
                raise _bad(
                    name,
                    f"view {view.name!r} has no dimension {value!r} "
                    f"(dimensions: {', '.join(dims) or 'none'})",
                )
        if query.x == query.y:
            raise _bad("y", "x and y must be two different dimensions")
    if query.shape in ("box", "ellipse"):
        wanted = Quantiles if query.shape == "box" else CoMoments
        kinds = {m.name: m for m in view.measures}
        measure = kinds.get(query.measure or "")
        if measure is None:
            raise _bad(
                "measure",
                f"view {view.name!r} has no measure {query.measure!r} "
                f"(measures: {', '.join(kinds)})",
            )
        if not isinstance(measure, wanted):
            need = "a quantiles" if query.shape == "box" else "a covariance or correlation"
            raise _bad(
                "measure",
                f"{query.measure!r} is {measure.kind}; {query.shape} needs {need} measure",
            )
    return where


def run(snapshot: ViewSnapshot, query: ViewQuery) -> QueryResult:
    """Answer ``query`` from ``snapshot`` (all shapes read one commit)."""
    with snapshot.pinned():
        where = check(query, snapshot.view)
        view = snapshot.view
        source = snapshot
        if query.as_of_time is not None:
            source = snapshot.as_of(event_time=query.as_of_time)
            source._pinned = True  # the same read transaction as ``snapshot``
        common: dict[str, Any] = {"where": where or None, "start": query.start, "end": query.end}
        names = tuple(view.definition.dimensions if query.group_by is None else query.group_by)
        bucket = False
        match query.shape:
            case "kpi":
                table = shapes.kpi(source, **common)
                names = ()
            case "groups":
                table = shapes.groups(source, group_by=names, per_bucket=query.per_bucket, **common)
                bucket = query.per_bucket
            case "series":
                table = shapes.series(source, group_by=names, every=query.every, **common)
                bucket = True
            case "top":
                assert query.by is not None
                table = shapes.top(
                    source,
                    query.by,
                    query.k,
                    group_by=names,
                    ascending=query.ascending,
                    per_bucket=query.per_bucket,
                    **common,
                )
                bucket = query.per_bucket
            case "box":
                assert query.measure is not None
                table = shapes.box(
                    source,
                    query.measure,
                    group_by=names,
                    per_bucket=query.per_bucket,
                    every=query.every,
                    **common,
                )
                bucket = query.per_bucket
            case "heatmap":
                assert query.column and query.x and query.y
                table = shapes.heatmap(source, query.column, query.x, query.y, **common)
                names = (query.x, query.y)
            case _:
                assert query.measure is not None
                table = shapes.ellipse(source, query.measure, group_by=names, **common)
        position, definition_hash = snapshot.position, snapshot.definition_hash
    zone = view.definition.bucket.timezone if view.definition.bucket is not None else "UTC"
    key = [*names, "bucket"] if bucket else list(names)
    changed_at = None
    if "changed_at" in table.column_names:
        changed_at = [int(c or 0) for c in table.column("changed_at").to_pylist()]
        table = table.drop_columns(["changed_at"])
    return QueryResult(
        view=view.name,
        shape=query.shape,
        position=position,
        definition_hash=definition_hash,
        key=key,
        columns=[{"name": f.name, "type": type_name(f.type)} for f in table.schema],
        rows=json_rows(table, ZoneInfo(zone)),
        changed_at=changed_at,
    )


def type_name(kind: pa.DataType) -> str:
    """The JSON-facing name of a column type."""
    if pa.types.is_timestamp(kind):
        return "timestamp"
    if pa.types.is_integer(kind):
        return "integer"
    if pa.types.is_floating(kind):
        return "number"
    if pa.types.is_boolean(kind):
        return "boolean"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "string"
    return "json"


def json_rows(table: pa.Table, zone: ZoneInfo) -> list[dict[str, Any]]:
    """Rows as JSON values: times as ISO-8601 in ``zone``, NaN and infinity as null."""
    rows: list[dict[str, Any]] = table.to_pylist()
    for row in rows:
        for name, value in row.items():
            row[name] = json_value(value, zone)
    return rows


def json_value(value: Any, zone: ZoneInfo) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime):
        return value.astimezone(zone).isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: json_value(v, zone) for k, v in value.items()}
    if isinstance(value, list):
        return [json_value(v, zone) for v in value]
    return value

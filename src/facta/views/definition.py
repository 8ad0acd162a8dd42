"""View definitions: the declarative model, as written in ``facta.toml`` or built in Python.

The model checks shape (names, kinds, widths, time zones); :func:`facta.views.compile.compile_view`
checks meaning (fields exist, expressions bind, measures get numbers) with DuckDB.

>>> ViewDefinition.model_validate({
...     "name": "delays",
...     "source": {"types": ["FlightDeparted"]},
...     "fields": {"carrier": "string", "dep_delay": "double"},
...     "dimensions": ["carrier"],
...     "measures": {"flights": "count", "delay": "mean(dep_delay)"},
... }).measures["delay"].kind
'mean'
"""

from __future__ import annotations

import re
import tomllib
import zoneinfo
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from facta.views.measures import MEASURE_KINDS

NAME: Final = re.compile(r"[a-z][a-z0-9_]{0,62}")
FieldType = Literal["string", "double", "bigint", "boolean", "json"]
Width = Literal["1h", "1d", "1w", "1mo"]
BUILTIN_COLUMNS: Final = {
    "_position": "BIGINT",
    "_stream": "VARCHAR",
    "_type": "VARCHAR",
    "_version": "BIGINT",
    "_recorded_at": "TIMESTAMP WITH TIME ZONE",
    "_metadata": "JSON",
}
_SHORTHAND: Final = re.compile(r"\s*([a-z_]+)\s*(?:\(\s*([^)]*?)\s*\))?\s*")


class DefinitionError(ValueError):
    """A view definition that cannot be used: names the view, the field and the problem."""

    def __init__(self, view: str, field: str, problem: str) -> None:
        super().__init__(f"view {view!r}, {field}: {problem}")
        self.view = view
        self.field = field
        self.problem = problem


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Source(_Model):
    """Which events feed the view: any of ``types``, and/or streams starting with a prefix."""

    types: tuple[str, ...] = ()
    stream_prefix: str | None = None

    @model_validator(mode="after")
    def _something(self) -> Source:
        if not self.types and not self.stream_prefix:
            raise ValueError("a source needs event types, a stream prefix, or both")
        return self


class Bucket(_Model):
    """Event-time buckets, calendar-aligned in ``timezone`` (weeks start on Monday).

    ``format = "iso"`` reads ISO-8601 text with an offset (``Z`` or ``±hh:mm``); ``"epoch"``
    reads a number in ``unit`` (s, ms or us) since 1970-01-01 UTC.
    """

    field: str
    width: Width
    timezone: str = "UTC"
    format: Literal["iso", "epoch"] = "iso"
    unit: Literal["s", "ms", "us"] | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r}") from None
        return value

    @model_validator(mode="after")
    def _unit_for_epoch(self) -> Bucket:
        if self.format == "epoch" and self.unit is None:
            raise ValueError("an epoch bucket field needs a unit: s, ms or us")
        if self.format == "iso" and self.unit is not None:
            raise ValueError("unit applies only to format = 'epoch'")
        return self


class MeasureSpec(_Model):
    """One measure: its kind, the field(s) it reads and its sketch parameters."""

    kind: str
    fields: tuple[str, ...] = ()
    k: int | None = Field(default=None, ge=1, le=65535)
    q: tuple[float, ...] | None = None
    lg_k: int | None = Field(default=None, ge=4, le=21)
    lg_max_map: int | None = Field(default=None, ge=3, le=26)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            match = _SHORTHAND.fullmatch(value)
            if match is None:
                raise ValueError(f"cannot read measure {value!r}: expected kind or kind(field, …)")
            kind, args = match.group(1), match.group(2)
            parts = [a.strip() for a in args.split(",")] if args else []
            spec: dict[str, Any] = {"kind": kind, "fields": []}
            for part in parts:
                if "=" in part:
                    key, raw = (p.strip() for p in part.split("=", 1))
                    spec[key] = int(raw)
                else:
                    spec["fields"].append(part)
            return spec
        if isinstance(value, Mapping) and "field" in value:
            rest = {k: v for k, v in value.items() if k != "field"}
            return {**rest, "fields": [value["field"]]}
        return value

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        if value not in MEASURE_KINDS:
            known = ", ".join(sorted(MEASURE_KINDS))
            raise ValueError(f"unknown measure kind {value!r}: expected one of {known}")
        return value

    @field_validator("q")
    @classmethod
    def _ranks(cls, value: tuple[float, ...] | None) -> tuple[float, ...] | None:
        if value is not None and not all(0.0 <= q <= 1.0 for q in value):
            raise ValueError(f"quantile ranks must lie in [0, 1], found {list(value)}")
        return value

    @model_validator(mode="after")
    def _arity(self) -> MeasureSpec:
        needed = MEASURE_KINDS[self.kind].fields_needed
        if len(self.fields) != needed:
            raise ValueError(f"{self.kind} takes {needed} field(s), found {len(self.fields)}")
        allowed = {"quantiles": {"k", "q"}, "top_k": {"k", "lg_max_map"}, "distinct": {"lg_k"}}
        given = {p for p in ("k", "q", "lg_k", "lg_max_map") if getattr(self, p) is not None}
        extra = given - allowed.get(self.kind, set())
        if extra:
            raise ValueError(f"{self.kind} takes no parameter {', '.join(sorted(extra))}")
        return self

    def params(self) -> dict[str, Any]:
        """Sketch parameters with their defaults filled in (part of the definition hash)."""
        if self.kind == "quantiles":
            return {"k": self.k or 200, "q": list(self.q or (0.25, 0.5, 0.75))}
        if self.kind == "top_k":
            return {"k": self.k or 10, "lg_max_map": self.lg_max_map or 10}
        if self.kind == "distinct":
            return {"lg_k": self.lg_k or 12}
        return {}


class TableDefinition(_Model):
    """A reference table derived from the log: the latest upsert event per key.

    Events of ``source`` upsert the row of their key; events of ``delete_types`` (holding the
    key fields) remove it. With ``time`` (a field of ISO-8601 text with an offset), rows are kept
    per key and time, and views join them as of their own event time.
    """

    source: Source
    delete_types: tuple[str, ...] = ()
    key: tuple[str, ...]
    fields: dict[str, FieldType]
    time: str | None = None

    @model_validator(mode="after")
    def _keys_are_fields(self) -> TableDefinition:
        if not self.key:
            raise ValueError("a table needs at least one key field")
        for name in (*self.key, *([self.time] if self.time else [])):
            if name not in self.fields:
                raise ValueError(f"key or time field {name!r} is not among the table's fields")
        if self.time is not None and (self.time in self.key or self.fields[self.time] != "string"):
            raise ValueError(f"time field {self.time!r} must be a string field outside the key")
        return self

    def value_fields(self) -> list[str]:
        return [n for n in self.fields if n not in self.key and n != self.time]


class Enrichment(_Model):
    """A left as-of join of a reference table: ``on`` maps each table key field to a view field.

    Without ``asof`` an event sees the row as it was at the event's own log position; with
    ``asof`` (a view field of ISO time) it sees the latest row whose time is at or before it,
    among the rows known at the event's position. Columns arrive as ``<alias>_<field>``.
    """

    table: str
    on: dict[str, str]
    asof: str | None = None


class ViewDefinition(_Model):
    """A view: source → enrich → filter → extract → group (dimensions, bucket) → measures."""

    name: str
    description: str = ""
    source: Source
    fields: dict[str, FieldType]
    tables: dict[str, TableDefinition] = Field(default_factory=dict)
    enrich: dict[str, Enrichment] = Field(default_factory=dict)
    filter: str | None = None
    extract: dict[str, str] = Field(default_factory=dict)
    dimensions: tuple[str, ...] = ()
    bucket: Bucket | None = None
    measures: dict[str, MeasureSpec]

    @field_validator("name")
    @classmethod
    def _view_name(cls, value: str) -> str:
        if NAME.fullmatch(value) is None:
            raise ValueError(f"view name {value!r} must match {NAME.pattern}")
        return value

    @model_validator(mode="after")
    def _names(self) -> ViewDefinition:
        declared: set[str] = set()
        enriched = [
            f"{alias}_{field}"
            for alias, join in self.enrich.items()
            if join.table in self.tables
            for field in self.tables[join.table].value_fields()
        ]
        for what, names in (
            ("field", list(self.fields)),
            ("enriched field", enriched),
            ("extracted field", list(self.extract)),
            ("measure", list(self.measures)),
        ):
            for name in names:
                if NAME.fullmatch(name) is None:
                    raise ValueError(f"{what} name {name!r} must match {NAME.pattern}")
                if name in declared:
                    raise ValueError(f"{what} name {name!r} is used twice")
                declared.add(name)
        if not self.measures:
            raise ValueError("a view needs at least one measure")
        return self


def load_definition(name: str, table: Mapping[str, Any]) -> ViewDefinition:
    """Validate one ``[views.NAME]`` table; errors name the view and the field."""
    try:
        return ViewDefinition.model_validate({"name": name, **table})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "definition"
        raise DefinitionError(name, where, first["msg"]) from None


def load_views(path: str | Path) -> list[ViewDefinition]:
    """Every ``[views.*]`` table of a ``facta.toml`` file, validated.

    Each view carries the ``[tables.*]`` it enriches from, so its definition (and hash) covers
    them: changing a table rebuilds the views that depend on it.
    """
    with open(path, "rb") as handle:
        document = tomllib.load(handle)
    tables = document.get("tables", {})
    views = []
    for name, table in document.get("views", {}).items():
        used = {}
        for alias, join in (table.get("enrich") or {}).items():
            wanted = join.get("table") if isinstance(join, Mapping) else None
            if wanted not in tables:
                known = ", ".join(sorted(tables)) or "none"
                raise DefinitionError(
                    name, f"enrich.{alias}.table", f"unknown table {wanted!r} (tables: {known})"
                )
            used[wanted] = tables[wanted]
        views.append(load_definition(name, {**table, "tables": used}))
    return views

"""From a validated definition to a runnable view: types bound, expressions normalised, hashed.

Compilation is where a definition meets DuckDB: every expression must parse, stay
deterministic and bind against the declared fields; every dimension, bucket field and measure
field must exist; numeric measures must get numbers. Any failure is a :class:`DefinitionError`
naming the view, the field and the problem.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from typing import Any, Final

import pyarrow as pa

from facta.views.definition import BUILTIN_COLUMNS, DefinitionError, ViewDefinition
from facta.views.expressions import (
    ExpressionError,
    bind_type,
    evaluator,
    parse_expression,
    value_kind,
)
from facta.views.measures import NUMERIC_KINDS, Measure, make_measure
from facta.views.parsing import FIELD_SQL_TYPES

STATE_FORMAT: Final = 2  # 2: bucketed views keep an all-time roll-up cell per group
_ARROW_FOR_KIND: Final = {
    "int": pa.int64(),
    "float": pa.float64(),
    "string": pa.string(),
    "bool": pa.bool_(),
    "time": pa.timestamp("us", tz="UTC"),
}


@dataclasses.dataclass(frozen=True)
class CompiledView:
    """A view ready to run: column kinds, normalised SQL, measure objects and the hash."""

    definition: ViewDefinition
    kinds: dict[str, str]
    filter_sql: str | None
    extract_sql: dict[str, str]
    measures: tuple[Measure, ...]
    definition_hash: str

    @property
    def name(self) -> str:
        return self.definition.name

    def measure_fields(self) -> list[str]:
        """The columns measures read, each once, in first-use order."""
        seen: dict[str, None] = {}
        for measure in self.measures:
            for name in measure.fields:
                seen.setdefault(name)
        return list(seen)

    def log_columns(self) -> list[str]:
        """The log columns this view reads: ``data`` and whichever builtins it refers to."""
        definition = self.definition
        texts = [self.filter_sql or "", *self.extract_sql.values()]
        names = {*definition.dimensions, *self.measure_fields()}
        if definition.bucket is not None:
            names.add(definition.bucket.field)
        wanted = ["position", "data"]
        for builtin, column in (
            ("_stream", "stream"),
            ("_type", "type"),
            ("_version", "version"),
            ("_recorded_at", "recorded_at"),
            ("_metadata", "metadata"),
        ):
            if builtin in names or any(re.search(rf"\b{builtin}\b", t) for t in texts):
                wanted.append(column)
        return wanted

    def output_types(self) -> dict[str, pa.DataType]:
        types: dict[str, pa.DataType] = {}
        for measure in self.measures:
            types.update(measure.output_types())
        return types

    def dimension_type(self, name: str) -> pa.DataType:
        return _ARROW_FOR_KIND.get(self.kinds[name], pa.string())


def compile_view(definition: ViewDefinition) -> CompiledView:
    """Check a definition against DuckDB and build its runnable form."""
    view = definition.name
    conn = evaluator()
    try:
        columns = {**BUILTIN_COLUMNS}
        for name, declared in definition.fields.items():
            columns[name] = FIELD_SQL_TYPES[declared]
        columns.update(_enriched_columns(definition))
        ddl = ", ".join(f'"{name}" {sql}' for name, sql in columns.items())
        conn.execute(f"CREATE TEMP TABLE view_input({ddl})")
        types = dict(columns)
        extract_sql: dict[str, str] = {}
        for name, text in definition.extract.items():
            normal = _expression(conn, view, f"extract.{name}", text)
            extract_sql[name] = normal
            types[name] = _bind(conn, view, f"extract.{name}", normal)
        filter_sql = None
        if definition.filter is not None:
            filter_sql = _expression(conn, view, "filter", definition.filter)
            found = _bind(conn, view, "filter", filter_sql)
            if found != "BOOLEAN":
                raise DefinitionError(view, "filter", f"must be BOOLEAN, found {found}")
    finally:
        conn.close()
    kinds = {name: value_kind(sql) for name, sql in types.items()}
    for index, dimension in enumerate(definition.dimensions):
        where = f"dimensions[{index}]"
        _require(view, where, dimension, kinds)
        if kinds[dimension] in ("other", "time"):
            raise DefinitionError(
                view, where, f"{dimension!r} of type {types[dimension]} cannot be a dimension"
            )
    if definition.bucket is not None:
        field = definition.bucket.field
        _require(view, "bucket.field", field, kinds)
        wanted = ("string", "time") if definition.bucket.format == "iso" else ("int", "float")
        if kinds[field] not in wanted:
            raise DefinitionError(
                view,
                "bucket.field",
                f"{field!r} of type {types[field]} cannot hold {definition.bucket.format} times",
            )
    measures = []
    for name, spec in definition.measures.items():
        for field in spec.fields:
            _require(view, f"measures.{name}", field, kinds)
            field_kind = kinds[field]
            if spec.kind in NUMERIC_KINDS and field_kind not in ("int", "float"):
                raise DefinitionError(
                    view,
                    f"measures.{name}",
                    f"{spec.kind} needs a numeric field, {field!r} is {types[field]}",
                )
            if field_kind == "other":
                raise DefinitionError(
                    view, f"measures.{name}", f"{field!r} of type {types[field]} is not a value"
                )
        params: dict[str, Any] = spec.params()
        if spec.fields:
            field_kind = kinds[spec.fields[0]]
            params["integer"] = field_kind == "int"
            params["value_type"] = _ARROW_FOR_KIND.get(field_kind, pa.string())
        measures.append(make_measure(name, spec.kind, spec.fields, **params))
    digest = definition_hash(definition, filter_sql, extract_sql)
    return CompiledView(definition, kinds, filter_sql, extract_sql, tuple(measures), digest)


def _enriched_columns(definition: ViewDefinition) -> dict[str, str]:
    """The columns enrichment adds, after checking each join against its table."""
    view = definition.name
    added: dict[str, str] = {}
    for alias, join in definition.enrich.items():
        where = f"enrich.{alias}"
        table = definition.tables.get(join.table)
        if table is None:
            raise DefinitionError(view, f"{where}.table", f"unknown table {join.table!r}")
        if set(join.on) != set(table.key):
            raise DefinitionError(
                view,
                f"{where}.on",
                f"must map every key field of {join.table!r} ({', '.join(table.key)}), "
                f"found {', '.join(join.on) or 'none'}",
            )
        for key, field in join.on.items():
            found = definition.fields.get(field)
            if found is None:
                raise DefinitionError(view, f"{where}.on", f"unknown field {field!r}")
            if found != table.fields[key]:
                raise DefinitionError(
                    view,
                    f"{where}.on",
                    f"{field!r} is {found} but key {join.table}.{key} is {table.fields[key]}",
                )
        if (join.asof is None) != (table.time is None):
            problem = (
                f"table {join.table!r} keeps rows by time {table.time!r}: name the event's time "
                "field in asof"
                if join.asof is None
                else f"table {join.table!r} has no time field, so asof cannot apply"
            )
            raise DefinitionError(view, f"{where}.asof", problem)
        if join.asof is not None and definition.fields.get(join.asof) != "string":
            raise DefinitionError(
                view, f"{where}.asof", f"{join.asof!r} must be a string field of ISO times"
            )
        for field in table.value_fields():
            added[f"{alias}_{field}"] = FIELD_SQL_TYPES[table.fields[field]]
    return added


def definition_hash(
    definition: ViewDefinition, filter_sql: str | None, extract_sql: dict[str, str]
) -> str:
    """SHA-256 over the normalised model: defaults filled, keys sorted, SQL as DuckDB prints it.

    The description is left out: changing it changes nothing computed.
    """
    model = definition.model_dump(mode="json", exclude={"description"})
    model["filter"] = filter_sql
    model["extract"] = extract_sql
    model["measures"] = {
        name: {"kind": spec.kind, "fields": list(spec.fields), **spec.params()}
        for name, spec in definition.measures.items()
    }
    model["measure_order"] = list(definition.measures)  # stored states follow this order
    model["state_format"] = STATE_FORMAT
    canonical = json.dumps(model, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _expression(conn: Any, view: str, where: str, text: str) -> str:
    try:
        return parse_expression(conn, text)
    except ExpressionError as exc:
        raise DefinitionError(view, where, str(exc)) from None


def _bind(conn: Any, view: str, where: str, sql: str) -> str:
    try:
        return bind_type(conn, sql, "view_input")
    except ExpressionError as exc:
        raise DefinitionError(view, where, str(exc)) from None


def _require(view: str, where: str, name: str, kinds: dict[str, str]) -> None:
    if name not in kinds:
        known = ", ".join(sorted(k for k in kinds if not k.startswith("_")))
        raise DefinitionError(view, where, f"unknown field {name!r} (known: {known})")

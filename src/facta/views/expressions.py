"""SQL expressions of views: parsed, checked and normalised by DuckDB, the one evaluator.

An expression must be a single scalar expression over the event's fields. Subqueries,
aggregates, window and table functions, and functions whose result can change between runs
(``random``, ``now``, ``current_date``, ``getenv``, …) are refused, so that a rebuild from the
log always gives the live state. Reading files is impossible twice over: table functions are
refused here, and the evaluator runs with external access disabled.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from typing import Any, Final

import duckdb

_ALWAYS_REFUSED: Final = frozenset(
    {"getenv", "current_setting", "current_query", "setseed", "nextval", "currval"}
)


class ExpressionError(ValueError):
    """An expression DuckDB cannot parse, or one facta refuses to evaluate."""


def evaluator() -> duckdb.DuckDBPyConnection:
    """A fresh in-memory DuckDB connection as facta evaluates with it: UTC, no file access."""
    conn = duckdb.connect(":memory:")
    conn.execute("SET TimeZone = 'UTC'")
    conn.execute("SET autoinstall_known_extensions = false")
    conn.execute("SET autoload_known_extensions = false")
    conn.execute("SET enable_external_access = false")
    conn.execute("SET lock_configuration = true")
    return conn


@functools.cache
def refused_functions() -> frozenset[str]:
    """Function names an expression may not call, read from DuckDB's own catalogue."""
    conn = duckdb.connect(":memory:")
    try:
        rows = conn.execute(
            "SELECT function_name, function_type, stability FROM duckdb_functions()"
        ).fetchall()
    finally:
        conn.close()
    kinds: dict[str, set[str]] = {}
    stabilities: dict[str, set[str | None]] = {}
    for name, kind, stability in rows:
        kinds.setdefault(name, set()).add(kind)
        stabilities.setdefault(name, set()).add(stability)
    refused = set(_ALWAYS_REFUSED)
    for name, found in kinds.items():
        per_row = found & {"scalar", "macro"}
        stable = stabilities[name]
        if not per_row or "VOLATILE" in stable:
            refused.add(name)
        elif stable == {"CONSISTENT_WITHIN_QUERY"}:
            refused.add(name)  # now(), current_date, …: the same within a query, not a rebuild
    return frozenset(refused)


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def parse_expression(conn: duckdb.DuckDBPyConnection, text: str) -> str:
    """Check ``text`` is one deterministic scalar expression; return DuckDB's normalised form."""
    rows = conn.execute("SELECT json_serialize_sql($1)", [f"SELECT {text}"]).fetchall()
    raw = rows[0] if rows else None
    tree: dict[str, Any] = json.loads(raw[0]) if raw else {"error": True}
    if tree.get("error"):
        message = tree.get("error_message", "cannot parse")
        raise ExpressionError(f"invalid expression {text!r}: {message}")
    statements: list[dict[str, Any]] = tree.get("statements", [])
    node: dict[str, Any] = statements[0]["node"] if len(statements) == 1 else {}
    if (
        node.get("type") != "SELECT_NODE"
        or len(node.get("select_list", [])) != 1
        or node.get("from_table", {}).get("type") != "EMPTY"
        or node.get("where_clause") is not None
        or node.get("group_expressions")
        or node.get("having") is not None
        or node.get("modifiers")
        or node.get("cte_map", {}).get("map")
        or node.get("qualify") is not None
    ):
        raise ExpressionError(f"invalid expression {text!r}: expected one scalar expression")
    refused = refused_functions()
    for item in _walk(node["select_list"]):
        kind = item.get("class")
        if kind == "SUBQUERY":
            raise ExpressionError(f"expression {text!r} holds a subquery, which is refused")
        if kind == "WINDOW":
            raise ExpressionError(f"expression {text!r} holds a window function, which is refused")
        if kind == "FUNCTION":
            name = str(item.get("function_name", "")).lower()
            if name in refused:
                raise ExpressionError(
                    f"expression {text!r} calls {name}(), which is non-deterministic, reads "
                    "files or aggregates rows: refused"
                )
    normal = conn.execute("SELECT json_deserialize_sql(json_serialize_sql($1))", [f"SELECT {text}"])
    row = normal.fetchall()[0]
    return str(row[0]).removeprefix("SELECT ")


def bind_type(conn: duckdb.DuckDBPyConnection, expression: str, table: str) -> str:
    """The DuckDB type of ``expression`` over ``table`` (an empty table of the view's columns)."""
    try:
        described = conn.execute(f"SELECT {expression} FROM {table} LIMIT 0").description
    except duckdb.Error as exc:
        first = str(exc).splitlines()[0]
        raise ExpressionError(f"expression {expression!r} does not bind: {first}") from None
    assert described is not None
    return str(described[0][1])


INTEGER_TYPES: Final = frozenset(
    {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER"}
)
FLOAT_TYPES: Final = frozenset({"FLOAT", "DOUBLE", "UBIGINT", "HUGEINT"})


def value_kind(duck_type: str) -> str:
    """How a DuckDB type reaches measures: ``int``, ``float``, ``string``, ``bool``, ``time``."""
    if duck_type in INTEGER_TYPES:
        return "int"
    if duck_type in FLOAT_TYPES or duck_type.startswith("DECIMAL"):
        return "float"
    if duck_type == "BOOLEAN":
        return "bool"
    if duck_type.startswith("TIMESTAMP") or duck_type == "DATE":
        return "time"
    if duck_type == "VARCHAR":
        return "string"
    return "other"

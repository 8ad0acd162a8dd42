"""Strict parsing of JSON event fields in DuckDB SQL, shared by views and reference tables.

A field declared ``double`` accepts JSON numbers only; ``"12"`` (a string) is not silently
turned into NULL or 12 — it is flagged, so the caller can count it as a rejected value with its
position. Times are ISO-8601 text with an explicit offset; anything else is no time at all.
"""

from __future__ import annotations

from typing import Final

FIELD_SQL_TYPES: Final = {
    "string": "VARCHAR",
    "double": "DOUBLE",
    "bigint": "BIGINT",
    "boolean": "BOOLEAN",
    "json": "JSON",
}
# JSON types each declared field type accepts (as DuckDB's json_type names them).
ACCEPTS: Final = {
    "double": "('DOUBLE', 'BIGINT', 'UBIGINT', 'HUGEINT')",
    "bigint": "('BIGINT', 'UBIGINT')",
    "string": "('VARCHAR')",
    "boolean": "('BOOLEAN')",
}
ISO_WITH_OFFSET: Final = (
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|z|[+-]\d{2}(:?\d{2})?)"
)


def fragments_sql(names: list[str], source: str = "_data") -> str:
    """One select item parsing the document once into a list of each field's JSON (``__j``)."""
    if not names:
        return "NULL AS __j"
    paths = ", ".join(f"'$.\"{n}\"'" for n in names)
    return f"json_extract({source}, [{paths}]) AS __j"


def json_kinds_sql(names: list[str]) -> str:
    """Select items naming each field's JSON type (``__t_<name>``); needs ``__j`` in scope."""
    return ", ".join(f'json_type(__j[{i + 1}]) AS "__t_{n}"' for i, n in enumerate(names))


def field_sql(name: str, declared: str, index: int) -> tuple[str, str]:
    """The typed value of a declared field and the flag saying its JSON had the wrong type.

    Expects ``__j`` (:func:`fragments_sql`) and ``__t_<name>`` (:func:`json_kinds_sql`) in
    scope; ``index`` is the field's place in the list they were built from.
    """
    kind = f'"__t_{name}"'
    raw = f"__j[{index + 1}]"
    if declared == "json":
        return f'{raw} AS "{name}"', f'false AS "__bad_{name}"'
    accepts = ACCEPTS[declared]
    if declared == "string":
        value = f"json_extract_string({raw}, '$')"
    else:
        value = f"TRY_CAST({raw} AS {FIELD_SQL_TYPES[declared]})"
    typed = f'CASE WHEN {kind} IN {accepts} THEN {value} END AS "{name}"'
    bad = (
        f"({kind} IS NOT NULL AND {kind} <> 'NULL' AND "
        f'({kind} NOT IN {accepts} OR {value} IS NULL)) AS "__bad_{name}"'
    )
    return typed, bad


def iso_time_sql(expression: str) -> str:
    """A TIMESTAMPTZ from ISO text with an offset, NULL for anything else."""
    return (
        f"CASE WHEN regexp_full_match({expression}, '{ISO_WITH_OFFSET}') "
        f"THEN TRY_CAST({expression} AS TIMESTAMPTZ) END"
    )

"""Strict parsing of JSON event fields in DuckDB SQL, shared by views and reference tables.

A field declared ``double`` accepts JSON numbers only; ``"12"`` (a string) is not silently
turned into NULL or 12 — it is flagged, so the caller can count it as a rejected value with its
position. Times are ISO-8601 text with an explicit offset; anything else is no time at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

FIELD_SQL_TYPES: Final = {
    "string": "VARCHAR",
    "double": "DOUBLE",
    "bigint": "BIGINT",
    "boolean": "BOOLEAN",
    "json": "JSON",
}
ISO_WITH_OFFSET: Final = (
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|z|[+-]\d{2}(:?\d{2})?)"
)


def fragments_sql(fields: Mapping[str, str], source: str = "_data") -> str:
    """Select items parsing the document for every declared field at once: each field's JSON
    kind (``__k``, from ``json_type``) and its value as text (``__s``, strings unescaped,
    numbers and booleans as written), plus its raw JSON (``__j``) only when a field is
    declared ``json``.

    Two passes over the document, each producing one list for all fields, cost less than
    extracting JSON fragments and parsing each fragment again for its kind and its value.
    """
    if not fields:
        return "NULL AS __k, NULL AS __s, NULL AS __j"
    paths = ", ".join(f"'$.\"{n}\"'" for n in fields)
    raw = f"json_extract({source}, [{paths}])" if "json" in fields.values() else "NULL"
    return (
        f"json_type({source}, [{paths}]) AS __k, "
        f"json_extract_string({source}, [{paths}]) AS __s, {raw} AS __j"
    )


# Per declared type: the condition on the field's JSON kind under which the value has that type
# (``json_type`` names numbers UBIGINT, BIGINT or DOUBLE: any of them is a double).
_ACCEPTED_KINDS: Final = {
    "string": "= 'VARCHAR'",
    "boolean": "= 'BOOLEAN'",
    "double": "NOT IN ('VARCHAR', 'BOOLEAN', 'NULL', 'ARRAY', 'OBJECT')",
    "bigint": "IN ('BIGINT', 'UBIGINT')",
}


def field_sql(name: str, declared: str, index: int) -> tuple[str, str]:
    """The typed value of a declared field and the flag saying its JSON had the wrong type.

    Expects ``__k``, ``__s`` and ``__j`` (:func:`fragments_sql`) in scope; ``index`` is the
    field's place in the fields they were built from.
    """
    kind = f"__k[{index + 1}]"
    if declared == "json":
        return f'__j[{index + 1}] AS "{name}"', f'false AS "__bad_{name}"'
    text = f"__s[{index + 1}]"
    accepted = f"{kind} {_ACCEPTED_KINDS[declared]}"
    value = text if declared == "string" else f"TRY_CAST({text} AS {FIELD_SQL_TYPES[declared]})"
    typed = f'CASE WHEN {accepted} THEN {value} END AS "{name}"'
    absent = f"{kind} IS NULL OR {kind} = 'NULL'"
    # Text, booleans and numbers of an accepted kind always convert; an integer may overflow.
    overflow = f" OR {value} IS NULL" if declared == "bigint" else ""
    bad = f'(NOT ({absent}) AND (NOT ({accepted}){overflow})) AS "__bad_{name}"'
    return typed, bad


def iso_time_sql(expression: str) -> str:
    """A TIMESTAMPTZ from ISO text with an offset, NULL for anything else."""
    return (
        f"CASE WHEN regexp_full_match({expression}, '{ISO_WITH_OFFSET}') "
        f"THEN TRY_CAST({expression} AS TIMESTAMPTZ) END"
    )

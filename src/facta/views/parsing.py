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


def fragments_sql(names: list[str], source: str = "_data") -> str:
    """One select item parsing the document once into a list of each field's JSON (``__j``)."""
    if not names:
        return "NULL AS __j"
    paths = ", ".join(f"'$.\"{n}\"'" for n in names)
    return f"json_extract({source}, [{paths}]) AS __j"


def json_kinds_sql(fields: Mapping[str, str]) -> str:
    """Select items naming each field's JSON kind; needs ``__j`` (:func:`fragments_sql`) in scope.

    ``json_extract`` returns each fragment as normalised JSON text, so its first character
    tells its kind (``"`` text, ``t``/``f`` boolean, ``n`` null, ``{``/``[`` object or array,
    anything else a number) — about a third of the cost of ``json_type``. Only ``bigint`` needs
    ``json_type``, to tell an integer from ``1.5``.
    """
    items = []
    for i, (name, declared) in enumerate(fields.items()):
        raw = f"__j[{i + 1}]"
        if declared == "bigint":
            items.append(f'json_type({raw}) AS "__t_{name}"')
        elif declared != "json":
            items.append(f'left(CAST({raw} AS VARCHAR), 1) AS "__t_{name}"')
    return ", ".join(items)


# Per declared type: the condition on ``__t_<name>`` under which the fragment has that type.
_ACCEPTED_FIRST: Final = {
    "string": "= '\"'",
    "boolean": "IN ('t', 'f')",
    "double": "NOT IN ('\"', 't', 'f', 'n', '{', '[')",
    "bigint": "IN ('BIGINT', 'UBIGINT')",
}


def field_sql(name: str, declared: str, index: int) -> tuple[str, str]:
    """The typed value of a declared field and the flag saying its JSON had the wrong type.

    Expects ``__j`` (:func:`fragments_sql`) and ``__t_<name>`` (:func:`json_kinds_sql`) in
    scope; ``index`` is the field's place in the list they were built from.
    """
    kind = f'"__t_{name}"'
    raw = f"__j[{index + 1}]"
    if declared == "json":
        return f'{raw} AS "{name}"', f'false AS "__bad_{name}"'
    accepted = f"{kind} {_ACCEPTED_FIRST[declared]}"
    if declared == "string":
        value = f"json_extract_string({raw}, '$')"
    else:
        value = f"TRY_CAST({raw} AS {FIELD_SQL_TYPES[declared]})"
    typed = f'CASE WHEN {accepted} THEN {value} END AS "{name}"'
    absent = f"{kind} IS NULL OR {kind} IN ('n', 'NULL')"
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

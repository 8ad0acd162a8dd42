"""Parsing a page's documents with Arrow's JSON reader, when every value has its declared kind.

Strict parsing in DuckDB SQL (``parsing``) decides per value whether it has its field's
declared kind, and flags the ones that do not: that is the rule. It reads each document twice
(``json_type``, then ``json_extract_string``), about 52 ms for a page of 50,000 flights.
Arrow's JSON reader parses the same page into typed columns in one pass, about 35 ms, on one
thread and without the GIL. It is as strict as the rule, but for a whole page at once: a
string where a number is declared, a number where a string is, ``1.5`` or ``2**63`` for a
``bigint``, a duplicated key, all make it fail rather than convert. So a page is parsed by
Arrow first, and only a page it refuses goes through the strict SQL, which then says which
values are rejected. Either way the typed values are the same; what a page costs depends on
whether it holds a bad value.

Fields declared ``json`` keep their raw JSON text, which Arrow's reader does not give back:
views with such a field always use the strict SQL.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.json as pa_json

_ARROW_TYPES: Final = {
    "string": pa.string(),
    "double": pa.float64(),
    "bigint": pa.int64(),
    "boolean": pa.bool_(),
}
# Arrow's reader splits its input into blocks at newlines; the log's canonical JSON has none
# between documents, so a page must fit in one block (Arrow takes the block size as an int32).
_MAX_BLOCK: Final = 2**31 - 2


def parsed_column(index: int) -> str:
    """The name under which the ``index``-th declared field's parsed values reach DuckDB
    (apart from the page's own columns, whatever the fields are called)."""
    return f"__v{index}"


class ArrowFieldParser:
    """Parses the declared fields of a page's ``data`` column, or declines the page."""

    def __init__(self, fields: Mapping[str, str]) -> None:
        if not self.handles(fields):
            raise ValueError(f"Arrow's JSON reader cannot keep raw JSON: fields {dict(fields)}")
        schema = pa.schema([(name, _ARROW_TYPES[kind]) for name, kind in fields.items()])
        self._names = list(fields)
        self._options = pa_json.ParseOptions(
            explicit_schema=schema, unexpected_field_behavior="ignore"
        )

    @staticmethod
    def handles(fields: Mapping[str, str]) -> bool:
        return all(kind in _ARROW_TYPES for kind in fields.values())

    def parse(self, data: pa.ChunkedArray | pa.Array) -> list[pa.Array] | None:
        """One typed array per declared field (in declaration order), or None when any value
        has another kind than its field's (or the page is not one JSON object per row)."""
        documents = data.combine_chunks() if isinstance(data, pa.ChunkedArray) else data
        count = len(documents)
        if count == 0 or documents.null_count or documents.type != pa.string():
            return None
        offsets = np.frombuffer(documents.buffers()[1], dtype=np.int32)
        start = int(offsets[documents.offset])
        end = int(offsets[documents.offset + count])
        if end - start >= _MAX_BLOCK:
            return None
        text = documents.buffers()[2].slice(start, end - start)
        read = pa_json.ReadOptions(use_threads=False, block_size=max(end - start, 1) + 1)
        try:
            table = pa_json.read_json(
                pa.BufferReader(text), read_options=read, parse_options=self._options
            )
        except pa.ArrowInvalid:
            return None
        if table.num_rows != count:
            return None
        return [table.column(name).combine_chunks() for name in self._names]

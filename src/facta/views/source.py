"""Reading the log into Arrow: one page of a view's source events per micro-batch.

The view engine reads the log's SQLite file through its own read-only connection, so it never
takes the log's write lock and never slows an append. A page is read inside one read
transaction, together with the head, so "scanned up to" is exact even when most events of the
log belong to other views.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import apsw
import pyarrow as pa

from facta.views.definition import Source

PAGE_SCHEMA = pa.schema(
    [
        ("position", pa.int64()),
        ("stream", pa.string()),
        ("version", pa.int64()),
        ("type", pa.string()),
        ("recorded_at", pa.string()),
        ("data", pa.string()),
        ("metadata", pa.string()),
    ]
)


@dataclasses.dataclass(frozen=True, slots=True)
class Page:
    """Source events after ``after`` up to ``scanned`` (inclusive), and the log head then."""

    events: pa.Table
    after: int
    scanned: int
    head: int


class LogReader:
    """Pages of a view's source events from the log file at ``path``."""

    def __init__(self, path: str, source: Source, columns: Sequence[str] | None = None) -> None:
        flags = apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI
        self._conn: Any = apsw.Connection(path, flags=flags)
        self._conn.set_busy_timeout(5000)
        clauses = ["position > ?", "position <= ?"]
        self._params: list[Any] = []
        if source.types:
            clauses.append(f"type IN ({','.join('?' * len(source.types))})")
            self._params.extend(source.types)
        if source.stream_prefix:
            clauses.append("substr(stream, 1, ?) = ?")
            self._params.extend([len(source.stream_prefix), source.stream_prefix])
        # Columns nobody reads come back as nulls: fewer bytes from SQLite into Arrow.
        wanted = set(PAGE_SCHEMA.names if columns is None else columns) | {"position", "type"}
        self._columns = [name for name in PAGE_SCHEMA.names if name in wanted]
        self._sql = (
            f"SELECT {', '.join(self._columns)} FROM events "
            f"WHERE {' AND '.join(clauses)} ORDER BY position LIMIT ?"
        )

    def head(self) -> int:
        row = self._conn.execute("SELECT coalesce(max(position), 0) FROM events").fetchone()
        return int(row[0])

    def read(self, after: int, limit: int, *, until: int | None = None) -> Page:
        """At most ``limit`` source events after ``after`` (and at most ``until``)."""
        self._conn.execute("BEGIN")
        try:
            head = self.head()
            upper = head if until is None else min(head, until)
            rows = self._conn.execute(self._sql, [after, upper, *self._params, limit]).fetchall()
        finally:
            self._conn.execute("COMMIT")
        columns: list[Any] = list(zip(*rows, strict=True)) if rows else [() for _ in self._columns]
        read = dict(zip(self._columns, columns, strict=True))
        arrays = [
            pa.array(read[f.name], type=f.type) if f.name in read else pa.nulls(len(rows), f.type)
            for f in PAGE_SCHEMA
        ]
        table = pa.Table.from_arrays(arrays, schema=PAGE_SCHEMA)
        scanned = int(rows[-1][0]) if len(rows) >= limit else max(upper, after)
        return Page(table, after, scanned, head)

    def close(self) -> None:
        self._conn.close()

"""Reference tables inside the view's DuckDB connection, kept exactly as of a log position.

A table is a DuckDB table ``ref_<name>`` holding the latest upsert per key (and per time, for
tables with a time field). Its events are read from the log ahead of the view's source events
and applied lazily: before a run of source events starting at position p, every table event
with a position below p is applied, and none after. So each event is enriched with the table as
it was at its own position, whatever the batch boundaries — a rebuild gives the live state.
"""

from __future__ import annotations

from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from facta.views.definition import Source, TableDefinition
from facta.views.parsing import (
    FIELD_SQL_TYPES,
    field_sql,
    fragments_sql,
    iso_time_sql,
)
from facta.views.source import LogReader

_PAGE = 50_000


class ReferenceTable:
    """One reference table: pending log events and the DuckDB table they build."""

    def __init__(
        self, conn: duckdb.DuckDBPyConnection, name: str, table: TableDefinition, log_path: str
    ) -> None:
        self.name = name
        self.table = table
        self.sql_name = f'"ref_{name}"'
        self._conn = conn
        types = (*table.source.types, *table.delete_types)
        self._reader = LogReader(
            log_path, Source(types=types, stream_prefix=table.source.stream_prefix)
        )
        self._pending: list[pa.Table] = []
        self.fetched = 0  # table events up to this position have been read from the log
        self.applied = 0  # and up to this one applied to the DuckDB table
        columns = [f'"{k}" {FIELD_SQL_TYPES[table.fields[k]]}' for k in table.key]
        if table.time is not None:
            columns.append('"__time" TIMESTAMPTZ')
        columns += [f'"{f}" {FIELD_SQL_TYPES[table.fields[f]]}' for f in table.value_fields()]
        columns.append('"__position" BIGINT')
        conn.execute(f"CREATE TABLE {self.sql_name}({', '.join(columns)})")
        self._apply_sql = self._build_apply_sql()

    def _build_apply_sql(self) -> str:
        table = self.table
        names = list(table.fields)
        typed = [field_sql(n, table.fields[n], i)[0] for i, n in enumerate(names)]
        identity = [f'"{k}"' for k in table.key]
        if table.time is not None:
            typed.append(f'{iso_time_sql(chr(34) + table.time + chr(34))} AS "__time"')
        names_sql = ", ".join(f"'{t}'" for t in table.delete_types)
        deletes = f"type IN ({names_sql})" if names_sql else "false"
        return f"""
WITH fragments AS (
    SELECT position, type, {fragments_sql(table.fields, "CAST(data AS JSON)")} FROM ref_page
), typed AS (
    SELECT position, {deletes} AS __delete, {", ".join(typed[: len(names)])}
    FROM fragments
), timed AS (
    SELECT *{", " + typed[-1] if table.time is not None else ""} FROM typed
)
SELECT * FROM timed
WHERE {" AND ".join(f"{k} IS NOT NULL" for k in identity)}
QUALIFY row_number() OVER (
    PARTITION BY {", ".join(identity + (['"__time"'] if table.time else []))}
    ORDER BY position DESC) = 1
"""

    def fetch(self, until: int) -> np.ndarray[Any, Any]:
        """Read table events up to ``until`` from the log; return their positions."""
        found = []
        while self.fetched < until:
            page = self._reader.read(self.fetched, _PAGE, until=until)
            if page.events.num_rows:
                self._pending.append(page.events)
                found.append(page.events.column("position").to_numpy())
            self.fetched = max(page.scanned, self.fetched)
            if page.events.num_rows < _PAGE:
                self.fetched = max(self.fetched, min(until, page.head))
                break
        return np.concatenate(found) if found else np.zeros(0, dtype=np.int64)

    def apply_before(self, position: int) -> None:
        """Apply every fetched table event whose position is below ``position``."""
        if not self._pending:
            return
        events = pa.concat_tables(self._pending)
        positions = events.column("position")
        now = events.filter(pc.less(positions, position))
        later = events.filter(pc.greater_equal(positions, position))
        self._pending = [later] if later.num_rows else []
        if now.num_rows:
            self._apply(now)
            self.applied = max(self.applied, int(pc.max(now.column("position")).as_py()))

    def _apply(self, events: pa.Table) -> None:
        conn = self._conn
        conn.register("ref_page", events)
        try:
            last = conn.sql(self._apply_sql).to_arrow_table()
        finally:
            conn.unregister("ref_page")
        keys = list(self.table.key) + (["__time"] if self.table.time else [])
        conn.register("ref_last", last)
        try:
            match = " AND ".join(f't."{k}" IS NOT DISTINCT FROM l."{k}"' for k in self.table.key)
            if self.table.time is not None:
                # An upsert replaces the row of its key and time; a delete removes every time.
                conn.execute(
                    f"DELETE FROM {self.sql_name} t USING ref_last l WHERE {match} "
                    'AND (l.__delete OR t."__time" IS NOT DISTINCT FROM l."__time")'
                )
            else:
                conn.execute(f"DELETE FROM {self.sql_name} t USING ref_last l WHERE {match}")
            columns = ", ".join(f'"{c}"' for c in [*keys, *self.table.value_fields()])
            conn.execute(
                f'INSERT INTO {self.sql_name}({columns}, "__position") '
                f"SELECT {columns}, position FROM ref_last WHERE NOT __delete"
            )
        finally:
            conn.unregister("ref_last")

    def close(self) -> None:
        self._reader.close()

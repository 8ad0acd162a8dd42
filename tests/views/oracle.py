"""The independent side of the oracle: hand-written SQL in tests/oracle run by DuckDB.

Nothing here imports facta's view code. Events are read straight from the log's SQLite file
with the standard library and handed to DuckDB as a table ``events(position, stream, type,
data)``; the SQL files parse the JSON themselves.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

SQL_DIR = Path(__file__).parents[1] / "oracle"


def oracle_connection(log_path: Path) -> duckdb.DuckDBPyConnection:
    source = sqlite3.connect(f"file:{log_path}?mode=ro", uri=True)
    try:
        rows = source.execute(
            "SELECT position, stream, type, data FROM events ORDER BY position"
        ).fetchall()
    finally:
        source.close()
    columns = list(zip(*rows, strict=True))
    table = pa.table(
        {
            "position": pa.array(columns[0], pa.int64()),
            "stream": pa.array(columns[1], pa.string()),
            "type": pa.array(columns[2], pa.string()),
            "data": pa.array(columns[3], pa.string()),
        }
    )
    conn = duckdb.connect(":memory:")
    conn.execute("SET TimeZone = 'UTC'")
    conn.register("events_arrow", table)
    conn.execute("CREATE TABLE events AS SELECT * FROM events_arrow")
    conn.unregister("events_arrow")
    return conn


def run_sql(conn: duckdb.DuckDBPyConnection, name: str) -> list[dict[str, Any]]:
    """Rows of ``tests/oracle/<name>.sql`` as dictionaries."""
    table = conn.sql((SQL_DIR / f"{name}.sql").read_text()).to_arrow_table()
    rows: list[dict[str, Any]] = table.to_pylist()
    return rows

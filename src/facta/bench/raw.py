"""Baselines: what the same rows cost written and read with no log in between.

Writes go through apsw with the pragmas of facta's writer connection (WAL, ``synchronous=FULL``,
``fullfsync``); the one difference is that SQLite checkpoints the WAL itself inside commits
(its default), where facta checkpoints from a background thread. The table has the same columns
and only the rowid key: a raw INSERT touches one B-tree.

The schema floor runs facta's own statements on facta's schema the same way, with no Python
work between them: what an append could reach if facta's code cost nothing, so a goal above it
cannot be met without changing the schema.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
import uuid
from collections.abc import Callable
from typing import Any, Final

import apsw

from facta.bench.rows import EVENT_TYPE, Row
from facta.log.config import LogConfig
from facta.log.sqlite_schema import INSERT_EVENT, connect, create_schema
from facta.log.sqlite_write import CLAIM_KEY

RAW_TABLE: Final = (
    "CREATE TABLE events(position INTEGER PRIMARY KEY, id TEXT NOT NULL, stream TEXT NOT NULL, "
    "version INTEGER NOT NULL, type TEXT NOT NULL, schema_version INTEGER NOT NULL, "
    "recorded_at TEXT NOT NULL, data TEXT NOT NULL, metadata TEXT NOT NULL)"
)
RAW_INSERT: Final = "INSERT INTO events VALUES (?,?,?,?,?,?,?,?,?)"
# The columns of facta's page query, in its order, for the read baselines.
RAW_PAGE: Final = (
    "SELECT position, stream, version, type, schema_version, id, recorded_at, data, metadata "
    "FROM events WHERE position > ? ORDER BY position LIMIT ?"
)
_RECORDED_AT: Final = "2026-01-01T00:00:00.000000Z"
SQLITE_DEFAULT_AUTOCHECKPOINT: Final = 1000


def open_raw(path: str) -> Any:
    """A connection with facta's writer pragmas, SQLite's own checkpointing, and the raw table."""
    conn = connect(path, LogConfig(), writer=True)
    conn.wal_autocheckpoint(SQLITE_DEFAULT_AUTOCHECKPOINT)
    conn.execute(RAW_TABLE)
    return conn


def raw_tuples(rows: list[Row], streams: int) -> list[tuple[Any, ...]]:
    """The rows as INSERT parameters, round-robin over ``streams`` streams, made before timing."""
    versions = [0] * streams
    out = []
    for index, row in enumerate(rows):
        stream = index % streams
        versions[stream] += 1
        out.append(
            (
                index + 1,
                row.id,
                f"s{stream}",
                versions[stream],
                EVENT_TYPE,
                1,
                _RECORDED_AT,
                row.data_json,
                row.metadata_json,
            )
        )
    return out


def commit_per_row(path: str, params: list[tuple[Any, ...]]) -> float:
    """BEGIN IMMEDIATE, INSERT, COMMIT for every row; returns the seconds taken."""
    return _timed_commits(open_raw(path), params, 1, RAW_INSERT, claim=False)


def commit_per_batch(path: str, params: list[tuple[Any, ...]], batch: int) -> float:
    """executemany of ``batch`` rows per transaction; returns the seconds taken."""
    return _timed_commits(open_raw(path), params, batch, RAW_INSERT, claim=False)


def _timed_commits(
    conn: Any, params: list[tuple[Any, ...]], batch: int, insert: str, *, claim: bool
) -> float:
    """One write transaction per ``batch`` rows, an idempotency key's claim first if ``claim``;
    returns the seconds taken and closes ``conn``."""
    try:
        started = time.perf_counter()
        for start in range(0, len(params), batch):
            conn.execute("BEGIN IMMEDIATE")
            if claim:
                _claim(conn, start)
            if batch == 1:
                conn.execute(insert, params[start])
            else:
                conn.executemany(insert, params[start : start + batch])
            conn.execute("COMMIT")
        return time.perf_counter() - started
    finally:
        conn.close()


# -- the schema floor: facta's statements and schema, no Python in between ----------------------


def _schema_event(position: int, row: Row, stream: str, version: int) -> tuple[Any, ...]:
    """One row as facta's event INSERT parameters (16-byte id, causality columns)."""
    meta = row.event.metadata
    return (
        position,
        uuid.UUID(row.id).bytes,
        stream,
        version,
        EVENT_TYPE,
        1,
        _RECORDED_AT,
        row.data_json,
        row.metadata_json,
        meta.get("causation_id"),
        meta.get("correlation_id"),
    )


def schema_tuples(rows: list[Row], streams: int, run: int = 1) -> list[tuple[Any, ...]]:
    """The rows as facta's event INSERT parameters (16-byte ids, causality columns), ``run``
    rows at a time per stream, the streams taken round-robin (as facta's lines append them)."""
    versions = [0] * streams
    out = []
    for index, row in enumerate(rows):
        stream = (index // run) % streams
        versions[stream] += 1
        out.append(_schema_event(index + 1, row, f"stream-{stream}", versions[stream]))
    return out


def caller_rounds(
    rows: list[Row], callers: int, skip: Callable[[int], bool]
) -> list[tuple[tuple[Any, ...], tuple[Any, ...]]]:
    """The concurrent lines' appends as (key claim, event) parameters: caller ``c`` writes
    ``rows[c * per_caller:(c + 1) * per_caller]`` to stream ``caller-c`` with keys
    ``caller-c-i``, leaving out its ``i``-th append where ``skip(i)``; in rounds of one append
    per caller, positions in that order."""
    per_caller = len(rows) // callers
    out: list[tuple[tuple[Any, ...], tuple[Any, ...]]] = []
    versions = [0] * callers
    for index in range(per_caller):
        if skip(index):
            continue
        for caller in range(callers):
            row = rows[caller * per_caller + index]
            key = f"caller-{caller}-{index}"
            digest = hashlib.sha256(key.encode()).digest()
            claim = (key, digest, "[1,1,[]]", None, _RECORDED_AT)
            versions[caller] += 1
            event = _schema_event(len(out) + 1, row, f"caller-{caller}", versions[caller])
            out.append((claim, event))
    return out


def open_schema(path: str) -> Any:
    """facta's schema and writer pragmas, with SQLite's own checkpointing like the baseline."""
    conn = connect(path, LogConfig(), writer=True)
    conn.wal_autocheckpoint(SQLITE_DEFAULT_AUTOCHECKPOINT)
    create_schema(conn)
    return conn


def _claim(conn: Any, index: int) -> None:
    digest = hashlib.sha256(b"%d" % index).digest()
    conn.execute(CLAIM_KEY, (f"key-{index}", digest, "[1,1,[]]", None, _RECORDED_AT))


def schema_per_row(path: str, params: list[tuple[Any, ...]]) -> float:
    """What facta's writer runs for one keyed append of one event, per row: BEGIN IMMEDIATE,
    the key's claim, the event, COMMIT. The most a facta append can reach on this schema."""
    return _timed_commits(open_schema(path), params, 1, INSERT_EVENT, claim=True)


def schema_per_batch(path: str, params: list[tuple[Any, ...]], batch: int) -> float:
    """The same for keyed appends of ``batch`` events: one claim and one executemany each."""
    return _timed_commits(open_schema(path), params, batch, INSERT_EVENT, claim=True)


def schema_group_commits(
    path: str, appends: list[tuple[tuple[Any, ...], tuple[Any, ...]]], per_commit: int
) -> float:
    """What facta's writer runs for one-event keyed appends group-committed ``per_commit`` at a
    time (each append a key's claim and its event), with no Python work in between; returns the
    seconds the commits took.

    facta copies and restarts the WAL from a background thread, beside the appends; here the
    WAL is restarted between commits, outside the time measured, whenever it holds
    ``wal_checkpoint_bytes`` — so the floor leaves checkpoints out entirely and stays a ceiling.
    """
    conn = open_schema(path)
    conn.wal_autocheckpoint(0)
    limit = LogConfig().wal_checkpoint_bytes // conn.execute("PRAGMA page_size").fetchone()[0]
    wal_pages = 0

    def on_commit(_conn: Any, _name: str, pages: int) -> int:
        nonlocal wal_pages
        wal_pages = pages
        return apsw.SQLITE_OK

    conn.set_wal_hook(on_commit)
    timed = 0.0
    try:
        for start in range(0, len(appends), per_commit):
            started = time.perf_counter()
            conn.execute("BEGIN IMMEDIATE")
            for claim, event in appends[start : start + per_commit]:
                conn.execute(CLAIM_KEY, claim)
                conn.execute(INSERT_EVENT, event)
            conn.execute("COMMIT")
            timed += time.perf_counter() - started
            if wal_pages >= limit:
                conn.execute("PRAGMA wal_checkpoint(RESTART)")
        return timed
    finally:
        conn.close()


def fetch_stdlib(path: str, page: int) -> tuple[float, int]:
    """Every row of a log through stdlib ``sqlite3``, in pages, undecoded: (seconds, rows)."""
    return _fetch_pages(sqlite3.connect(path), page)


def fetch_apsw(path: str, page: int) -> tuple[float, int]:
    """Every row of a log through apsw, in pages, undecoded: (seconds, rows)."""
    return _fetch_pages(apsw.Connection(path, flags=apsw.SQLITE_OPEN_READONLY), page)


def _fetch_pages(conn: Any, page: int) -> tuple[float, int]:
    """Page through every row on ``conn`` (either driver), then close it: (seconds, rows)."""
    try:
        started = time.perf_counter()
        after: Any = 0
        count = 0
        while True:
            rows = conn.execute(RAW_PAGE, (after, page)).fetchall()
            if not rows:
                break
            count += len(rows)
            after = rows[-1][0]
        return time.perf_counter() - started, count
    finally:
        conn.close()


def stdlib_sqlite_version() -> str:
    return sqlite3.sqlite_version

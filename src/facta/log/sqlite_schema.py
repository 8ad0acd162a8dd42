"""The SQLite file: its tables, pragmas and the statements the backend runs."""

from __future__ import annotations

import time
from typing import Any, Final

import apsw

from facta.log.config import LogConfig

SCHEMA_VERSION: Final = 3
# Older versions this code upgrades in place when it opens them (see ``create_schema``).
MIGRATABLE: Final = (2,)

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS facta_meta(
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS events(
    position INTEGER PRIMARY KEY,
    id BLOB NOT NULL, -- the UUID's 16 bytes: a third of the text's size in the table and index
    stream TEXT NOT NULL,
    version INTEGER NOT NULL,
    type TEXT NOT NULL,
    schema_version INTEGER NOT NULL,
    recorded_at TEXT NOT NULL,
    data TEXT NOT NULL,
    metadata TEXT NOT NULL,
    causation_id TEXT,
    correlation_id TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS events_stream_version ON events(stream, version);
CREATE UNIQUE INDEX IF NOT EXISTS events_id ON events(id);
-- One index serves causality: a trace finds its chain by correlation id, then links events by
-- causation id inside it. One B-tree instead of two keeps a durable append to fewer pages.
CREATE INDEX IF NOT EXISTS events_causality ON events(correlation_id, causation_id)
    WHERE correlation_id IS NOT NULL;

-- Idempotency keys: rows in arrival order, found by the key's index. A keyed table WITHOUT ROWID
-- (schema version 2) kept whole rows in a B-tree ordered by key, so each new key went into a
-- random page holding only some 20 rows; here the rows go to the table's last page and only a
-- small (key, id) entry lands at a random place: about a third less CPU per claimed key.
CREATE TABLE IF NOT EXISTS outcomes(
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    digest BLOB NOT NULL,
    result TEXT NOT NULL, -- [first, last, [[stream, version, first, last], ...]] (see sqlite_write)
    outcome TEXT,
    recorded_at TEXT NOT NULL
);

-- Tracking records of consumers that append (processors): written only inside an append.
CREATE TABLE IF NOT EXISTS tracking(
    name TEXT PRIMARY KEY,
    position INTEGER NOT NULL,
    state TEXT NOT NULL,
    updated_at TEXT NOT NULL
) WITHOUT ROWID;
"""

INSERT_EVENT: Final = (
    "INSERT INTO events(position, id, stream, version, type, schema_version, recorded_at, "
    "data, metadata, causation_id, correlation_id) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
)

# One event as the text of a JSON array, built by SQLite; a page of them is decoded by msgspec in
# one call.
# Safe because stream and type names cannot hold quotes or backslashes, ids are UUIDs, times are
# ISO strings, and data and metadata are JSON we encoded ourselves; an id is written as its
# 32 hex digits, which msgspec decodes as a UUID. format() builds each text in
# one pass, where a chain of || copies the growing text once per piece.
_EVENT_JSON: Final = (
    'format(\'[%d,"%s",%d,"%s",%d,"%s","%s",%s,%s]\', position, stream, version, type, '
    "schema_version, hex(id), recorded_at, data, metadata)"
)


def page_query(where: str, order: str = "position", direction: str = "") -> str:
    """The matching events, in order, as one row: the text of one JSON array of them (NULL when
    none match), their number, the last one's order key, and the log's head.

    One statement is one read transaction, and SQLite runs all of it with the GIL released: a
    worker thread reads a page while another thread decodes the previous one. A row per event,
    or a statement each for the page and the head inside BEGIN ... COMMIT, made the reading
    thread take the GIL back between steps, and wait for it while a page was decoded. The
    array is joined in the order the subquery yields its rows, which SQLite does not promise
    for an aggregate: the decoder checks it (``_decode_page``).
    """
    last = "min" if direction == "DESC" else "max"
    return (
        f"SELECT '[' || group_concat(j, ',') || ']', count(*), {last}(k), "
        f"(SELECT coalesce(max(position), 0) FROM events) FROM "
        f"(SELECT {_EVENT_JSON} AS j, {order} AS k FROM events WHERE {where} "
        f"ORDER BY {order} {direction} LIMIT ?)"
    )


def connect(path: str, config: LogConfig, *, writer: bool, vfs: str | None = None) -> Any:
    flags = apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE | apsw.SQLITE_OPEN_URI
    conn = (
        apsw.Connection(path, flags=flags, vfs=vfs) if vfs else apsw.Connection(path, flags=flags)
    )
    conn.set_busy_timeout(int(config.lock_timeout * 1000))
    # WAL is persistent: set it once, on a new file. Switching needs an exclusive lock, which a
    # second process opening the log while another recovers it after a crash may not get.
    mode: Any = conn.execute("PRAGMA journal_mode").fetchone()
    if writer and mode[0] != "wal":
        switch_to_wal(conn, config.lock_timeout)
    # Readers need these too: the connection that runs a checkpoint syncs with its own settings.
    if config.durability == "strict":
        conn.execute("PRAGMA synchronous=FULL; PRAGMA fullfsync=1; PRAGMA checkpoint_fullfsync=1")
    else:  # a checkpoint must reach the disk before the WAL restarts, or the file is torn
        conn.execute("PRAGMA synchronous=NORMAL; PRAGMA checkpoint_fullfsync=1")
    if writer:
        conn.execute(f"PRAGMA journal_size_limit={config.wal_max_bytes}")
        conn.execute("PRAGMA cache_size=-65536")
        conn.wal_autocheckpoint(0)  # checkpoints run in the background, never in a commit
    else:
        conn.execute("PRAGMA cache_size=-32768")
        conn.wal_autocheckpoint(0)
    return conn


def switch_to_wal(conn: Any, timeout: float) -> None:
    """Put a new file in WAL mode, retrying (bounded by ``timeout`` seconds) while another
    connection opens it too.

    Two connections that each hold a shared lock on a new file and both want the exclusive
    lock the switch needs make SQLite answer "database is locked" at once, without calling the
    busy handler (waiting could deadlock them). The loser retries after a moment; by then the
    winner has switched the file, so the retry finds it in WAL mode and returns.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except apsw.BusyError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


# Version 2 -> 3: the outcomes table gets a rowid and a unique index on its key. Results written
# by version 2 keep their JSON-object form, which the reader still decodes.
_MIGRATE_2_TO_3: Final = """
ALTER TABLE outcomes RENAME TO outcomes_v2;
CREATE TABLE outcomes(
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    digest BLOB NOT NULL,
    result TEXT NOT NULL,
    outcome TEXT,
    recorded_at TEXT NOT NULL
);
INSERT INTO outcomes(key, digest, result, outcome, recorded_at)
    SELECT key, digest, result, outcome, recorded_at FROM outcomes_v2 ORDER BY recorded_at, key;
DROP TABLE outcomes_v2;
UPDATE facta_meta SET value = '3' WHERE key = 'schema_version';
"""


def create_schema(conn: Any) -> None:
    """Create the tables of a new log, or check (and upgrade) the version of an existing one.

    An upgrade runs inside the same write transaction as the check: it is all done or, if
    anything fails or the process dies, not at all. Two processes opening an old file at once
    take turns; the second finds it upgraded.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        known = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'facta_meta'"
        ).fetchone()
        row = None
        if known is not None:
            row = conn.execute("SELECT value FROM facta_meta WHERE key='schema_version'").fetchone()
        if row is None:
            conn.execute(SCHEMA)
            conn.execute(
                "INSERT INTO facta_meta(key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )
        else:
            version = int(row[0])
            if version in MIGRATABLE:
                conn.execute(_MIGRATE_2_TO_3)
            elif version != SCHEMA_VERSION:
                newer = "a newer facta" if version > SCHEMA_VERSION else "an older facta"
                raise RuntimeError(
                    f"log schema version {version} is not supported: this facta reads version "
                    f"{SCHEMA_VERSION} and upgrades version(s) "
                    f"{', '.join(map(str, MIGRATABLE))}; the file was written by {newer}"
                )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def effective_durability(conn: Any) -> dict[str, Any]:
    """The settings the writer connection actually runs with, read back from SQLite."""
    sync_names = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
    synchronous = conn.execute("PRAGMA synchronous").fetchone()[0]
    return {
        "synchronous": sync_names.get(synchronous, str(synchronous)),
        "journal_mode": conn.execute("PRAGMA journal_mode").fetchone()[0],
        "fullfsync": bool(conn.execute("PRAGMA fullfsync").fetchone()[0]),
        "checkpoint_fullfsync": bool(conn.execute("PRAGMA checkpoint_fullfsync").fetchone()[0]),
    }

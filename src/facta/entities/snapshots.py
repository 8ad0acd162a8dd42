"""Snapshots of entity state, beside the log in the same SQLite file, never authoritative.

A snapshot is ``(stream, version, kind, schema_version, state)``. It only shortens activation:
the state is rebuilt from the snapshot plus the stream's later events, and a snapshot whose
schema version differs from the kind's current one (or that no longer decodes) is ignored, so
the state is rebuilt by replaying the whole stream. Deleting the table loses nothing.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import apsw
import msgspec

from facta.entities.decider import KindSpec

SCHEMA = """
CREATE TABLE IF NOT EXISTS entity_snapshots(
    stream TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    kind TEXT NOT NULL,
    schema_version INTEGER NOT NULL,
    state TEXT NOT NULL,
    recorded_at TEXT NOT NULL
) WITHOUT ROWID;
"""

SAVE = (
    "INSERT INTO entity_snapshots(stream, version, kind, schema_version, state, recorded_at) "
    "VALUES (?,?,?,?,?,?) ON CONFLICT(stream) DO UPDATE SET version=excluded.version, "
    "kind=excluded.kind, schema_version=excluded.schema_version, state=excluded.state, "
    "recorded_at=excluded.recorded_at "
    "WHERE excluded.version > entity_snapshots.version "
    "OR excluded.schema_version != entity_snapshots.schema_version"
)

_encoder = msgspec.json.Encoder()


class Snapshot(msgspec.Struct, frozen=True):
    stream: str
    version: int
    kind: str
    schema_version: int
    state: Any


class SnapshotStore:
    """Reads and writes snapshots on its own connection to the log's file."""

    def __init__(self, path: str, *, busy_timeout: float = 5.0) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._conn: Any = None
        self._busy_ms = int(busy_timeout * 1000)
        self.ignored = 0  # snapshots skipped: other schema version or undecodable
        self.written = 0

    def _connection(self) -> Any:
        if self._conn is None:
            conn = apsw.Connection(self.path)
            conn.set_busy_timeout(self._busy_ms)
            # A snapshot is a cache: losing the last ones on power loss costs a replay, so
            # its commits skip the fsync that the log's own commits pay.
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(SCHEMA)
            self._conn = conn
        return self._conn

    def load(self, spec: KindSpec, stream: str) -> Snapshot | None:
        """The stored snapshot of ``stream`` if it fits the kind's current schema, else None."""
        with self._lock:
            row = (
                self._connection()
                .execute(
                    "SELECT version, kind, schema_version, state FROM entity_snapshots "
                    "WHERE stream = ?",
                    (stream,),
                )
                .fetchone()
            )
        if row is None:
            return None
        version, kind, schema_version, raw = row
        if kind != spec.name or schema_version != spec.snapshot_version:
            self.ignored += 1
            return None
        try:
            state = msgspec.json.decode(raw, type=spec.state_type)
        except (msgspec.ValidationError, msgspec.DecodeError):
            self.ignored += 1
            return None
        return Snapshot(stream, int(version), kind, int(schema_version), state)

    def save(self, spec: KindSpec, stream: str, version: int, state: Any) -> bool:
        """Store a snapshot unless a newer one exists. Failures are swallowed: it is a cache."""
        return self.save_many([(spec, stream, version, state)]) == 1

    def save_many(self, snapshots: Sequence[tuple[KindSpec, str, int, Any]]) -> int:
        """Store snapshots in one write transaction (each unless a newer one of its stream
        exists); how many were stored. Failures are swallowed: it is a cache."""
        now = datetime.now(UTC).isoformat()
        rows = []
        for spec, stream, version, state in snapshots:
            try:
                raw = _encoder.encode(state).decode()
            except (TypeError, msgspec.EncodeError):
                continue
            rows.append((stream, version, spec.name, spec.snapshot_version, raw, now))
        if not rows:
            return 0
        with self._lock, contextlib.suppress(apsw.Error):
            conn = self._connection()
            with conn:  # one transaction: one commit for all of them
                conn.executemany(SAVE, rows)
            self.written += len(rows)
            return len(rows)
        return 0

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

"""A log file of schema version 2 is upgraded in place, all or nothing; an unknown version is
refused with a message naming it, and the file is left as it was."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import apsw
import pytest

from facta.log import (
    IdempotencyKeyReused,
    LogConfig,
    NewEvent,
    SqliteLog,
    StreamAppend,
)
from facta.log.request import prepare_append

# The tables of schema version 2 as that version created them (the outcomes table was keyed by
# the idempotency key, WITHOUT ROWID).
V2_SCHEMA = """
CREATE TABLE facta_meta(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE events(
    position INTEGER PRIMARY KEY, id BLOB NOT NULL, stream TEXT NOT NULL,
    version INTEGER NOT NULL, type TEXT NOT NULL, schema_version INTEGER NOT NULL,
    recorded_at TEXT NOT NULL, data TEXT NOT NULL, metadata TEXT NOT NULL,
    causation_id TEXT, correlation_id TEXT
);
CREATE UNIQUE INDEX events_stream_version ON events(stream, version);
CREATE UNIQUE INDEX events_id ON events(id);
CREATE INDEX events_causality ON events(correlation_id, causation_id)
    WHERE correlation_id IS NOT NULL;
CREATE TABLE outcomes(
    key TEXT PRIMARY KEY, digest BLOB NOT NULL, result TEXT NOT NULL, outcome TEXT,
    recorded_at TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE tracking(
    name TEXT PRIMARY KEY, position INTEGER NOT NULL, state TEXT NOT NULL,
    updated_at TEXT NOT NULL
) WITHOUT ROWID;
INSERT INTO facta_meta(key, value) VALUES ('schema_version', '2');
"""
# A keyed append of one event to acc-1, as version 2 recorded it: the result as a JSON object.
V2_RESULT = (
    '{"first_position":1,"last_position":1,"streams":[{"stream":"acc-1","version":1,'
    '"first_position":1,"last_position":1}],"key":null,"outcome":null,"replayed":false}'
)
RECORDED_AT = "2026-11-20T10:00:00.000000Z"


def opened_event() -> NewEvent:
    return NewEvent(type="Opened", data={"owner": "ada"})


def write_v2_log(path: Path) -> None:
    """A version 2 file holding one keyed append (key ``open-1``, outcome ``{"ok": true}``)."""
    request = prepare_append(
        [StreamAppend("acc-1", (opened_event(),), 0)],
        key="open-1",
        outcome={"ok": True},
        config=LogConfig(),
    )
    event_id = request.streams[0].events[0].id
    conn = apsw.Connection(str(path))
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(V2_SCHEMA)
        conn.execute(
            "INSERT INTO events VALUES (1, ?, 'acc-1', 1, 'Opened', 1, ?, ?, '{}', NULL, NULL)",
            (event_id, RECORDED_AT, request.streams[0].events[0].data),
        )
        conn.execute(
            "INSERT INTO outcomes VALUES ('open-1', ?, ?, ?, ?)",
            (request.digest, V2_RESULT, request.outcome, RECORDED_AT),
        )
    finally:
        conn.close()


def file_state(path: Path) -> tuple[Any, ...]:
    """The schema version, the outcomes table's columns and its rows, read without facta."""
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        version: Any = conn.execute("SELECT value FROM facta_meta WHERE key='schema_version'")
        columns = conn.execute("SELECT name FROM pragma_table_info('outcomes')")
        rows = conn.execute("SELECT key, result, outcome FROM outcomes ORDER BY key")
        return (version.fetchone()[0], [c[0] for c in columns], rows.fetchall())
    finally:
        conn.close()


def test_a_version_2_log_is_upgraded_and_its_keys_still_replay(tmp_path: Path) -> None:
    path = tmp_path / "v2.db"
    write_v2_log(path)
    with SqliteLog(path) as log:
        record = log.lookup_sync("open-1")
        assert record is not None
        assert (record.result.first_position, record.result.version_of("acc-1")) == (1, 1)
        assert record.outcome == {"ok": True}
        # The same request under the same key returns the original result and writes nothing.
        again = log.append_sync(
            "acc-1", [opened_event()], expect=0, key="open-1", outcome={"ok": True}
        )
        assert again.replayed and again.first_position == 1 and again.outcome == {"ok": True}
        with pytest.raises(IdempotencyKeyReused) as reused:
            log.append_sync("acc-1", [opened_event()], expect=1, key="open-1")
        assert reused.value.key == "open-1"
        # New keys are recorded in the new form, next to the upgraded ones.
        second = log.append_sync("acc-1", [opened_event()], expect=1, key="open-2")
        assert second.first_position == 2 and not second.replayed
        assert log.append_sync("acc-1", [opened_event()], expect=1, key="open-2").replayed
        assert log.head_sync() == 2
        assert log.stats_sync().outcomes == 2
    version, columns, rows = file_state(path)
    assert version == "3"
    assert columns == ["id", "key", "digest", "result", "outcome", "recorded_at"]
    assert [(key, result[:1]) for key, result, _ in rows] == [("open-1", "{"), ("open-2", "[")]
    with SqliteLog(path) as reopened:  # opening an upgraded file again changes nothing
        record = reopened.lookup_sync("open-2")
        assert record is not None and record.result.last_position == 2
    assert file_state(path) == (version, columns, rows)


def test_an_upgrade_that_fails_leaves_the_version_2_file_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "v2.db"
    write_v2_log(path)
    conn = apsw.Connection(str(path))
    try:  # a table in the way of the upgrade's rename makes it fail half-way
        conn.execute("CREATE TABLE outcomes_v2(x)")
    finally:
        conn.close()
    before = file_state(path)
    with pytest.raises(apsw.SQLError) as failed:
        SqliteLog(path)
    assert "outcomes_v2" in str(failed.value)
    assert file_state(path) == before
    assert before[0] == "2" and before[1][0] == "key"


def test_a_log_of_an_unknown_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "v9.db"
    write_v2_log(path)
    conn = apsw.Connection(str(path))
    try:
        conn.execute("UPDATE facta_meta SET value = '9' WHERE key = 'schema_version'")
    finally:
        conn.close()
    before = file_state(path)
    with pytest.raises(RuntimeError) as refused:
        SqliteLog(path)
    message = str(refused.value)
    assert "log schema version 9 is not supported" in message
    assert "reads version 3" in message and "written by a newer facta" in message
    assert file_state(path) == before

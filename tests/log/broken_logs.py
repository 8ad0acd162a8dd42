"""Deliberately broken variants of the SQLite log that the durability tests must catch."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import apsw

from facta.log import AppendResult, SqliteLog
from facta.log.group_commit import Pending
from facta.log.request import PreparedAppend
from facta.log.sqlite_schema import INSERT_EVENT
from facta.log.sqlite_write import SqliteWriter


class SyncOffDeclaredStrict(SqliteLog):
    """Broken: says ``strict`` but its writer runs with ``synchronous=OFF`` (never syncs)."""

    def _open(self, *, writer: bool) -> Any:
        conn = super()._open(writer=writer)
        if writer:
            conn.execute("PRAGMA synchronous=OFF")
        return conn


class AcknowledgeBeforeCommit(SqliteWriter):
    """Broken: tells callers their appends are written, then commits."""

    def _commit(
        self, conn: Any, batch: list[Pending], acknowledge: Callable[[list[Pending]], None]
    ) -> None:
        self._count(batch)
        acknowledge(batch)
        try:
            conn.execute("COMMIT")
        except apsw.Error:
            with contextlib.suppress(apsw.Error):
                conn.execute("ROLLBACK")


class EarlyAcknowledgingLog(SqliteLog):
    writer_class = AcknowledgeBeforeCommit


class _CommitAfterEachEvent:
    """A connection that commits after every inserted event (and before the key is written)."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Any = None) -> Any:
        cursor = self._conn.execute(sql, params)
        if sql == INSERT_EVENT:
            self._conn.execute("COMMIT")
            self._conn.execute("BEGIN IMMEDIATE")
        return cursor

    def executemany(self, sql: str, rows: Any) -> None:
        for row in rows:
            self.execute(sql, row)

    def __getattr__(self, name: str) -> Any:  # changes(), … of the real connection
        return getattr(self._conn, name)


class SplitAppendWriter(SqliteWriter):
    """Broken: spreads one append over several transactions."""

    def _apply(
        self, conn: Any, request: PreparedAppend, head: int, versions: dict[str, int]
    ) -> AppendResult:
        return super()._apply(_CommitAfterEachEvent(conn), request, head, versions)


class SplitAppendLog(SqliteLog):
    writer_class = SplitAppendWriter


class CheckpointerWithoutFullFsync(SqliteLog):
    """The log as it was before every connection got the durability settings: the background
    checkpointer synced with a plain fsync()."""

    def _open(self, *, writer: bool) -> Any:
        conn = super()._open(writer=writer)
        if not writer:
            conn.execute("PRAGMA fullfsync=0; PRAGMA checkpoint_fullfsync=0")
        return conn


VARIANTS: dict[str, type[SqliteLog]] = {
    "correct": SqliteLog,
    "sync-off": SyncOffDeclaredStrict,
    "ack-before-commit": EarlyAcknowledgingLog,
    "split-append": SplitAppendLog,
    "checkpoint-without-fullfsync": CheckpointerWithoutFullFsync,
}

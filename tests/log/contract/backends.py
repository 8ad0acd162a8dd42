"""The backends the contract suite runs against, and the few backend-specific tools it needs.

A backend joins the suite by adding one :class:`Backend` to :data:`BACKENDS`: how to open a log
at a path, how another process holds its write lock, whether its live-wake-up machinery is
running, deliberately broken variants the suite must catch (an expectation checked outside
the write transaction, a batch blind to its own earlier appends), and a faulty variant whose
storage fails on demand. Everything else is backend-neutral.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import apsw

from facta.log import (
    AppendResult,
    AppendTicket,
    Clock,
    Expect,
    Expectation,
    Log,
    LogConfig,
    LogStats,
    NewEvent,
    OutcomeRecord,
    RecordedEvent,
    SqliteLog,
    StreamAppend,
    Tracking,
    WrongExpectedVersion,
)
from facta.log.request import PreparedAppend
from facta.log.sqlite_write import SqliteWriter


class ContractLog(Log, Protocol):
    """What the suite uses of a log: the async protocol, its sync twins and two test hooks."""

    path: str

    def append_sync(
        self,
        stream: str,
        events: Sequence[NewEvent],
        *,
        expect: Expectation = ...,
        key: str | None = None,
        outcome: Any = None,
    ) -> AppendResult: ...

    def append_many_sync(
        self, entries: Sequence[StreamAppend], *, key: str | None = None, outcome: Any = None
    ) -> AppendResult: ...

    def read_stream_sync(
        self,
        stream: str,
        *,
        from_version: int = 1,
        limit: int | None = None,
        backward: bool = False,
    ) -> list[RecordedEvent]: ...

    def read_all_sync(
        self,
        *,
        after: int = 0,
        limit: int = 1000,
        types: Sequence[str] | None = None,
        stream_prefix: str | None = None,
    ) -> list[RecordedEvent]: ...

    def head_sync(self) -> int: ...

    def stream_version_sync(self, stream: str) -> int: ...

    def lookup_sync(self, key: str) -> OutcomeRecord | None: ...

    def lookup_many_sync(self, keys: Sequence[str]) -> list[OutcomeRecord | None]: ...

    def stats_sync(self) -> LogStats: ...

    def hold_writer(self) -> contextlib.AbstractContextManager[None]:
        """Appends queue up, but no write transaction runs until the block exits."""
        ...

    def queued_appends(self) -> int: ...

    async def read_page(
        self,
        after: int,
        limit: int,
        types: Sequence[str] | None,
        stream_prefix: str | None,
        scan_window: int | None,
    ) -> tuple[list[RecordedEvent], int, int]:
        """The one read a subscription makes per page (the suite wraps it to count buffering)."""
        ...


class FaultyLog(ContractLog, Protocol):
    """A real backend with two injectable storage faults (raised by the database itself)."""

    def fail_next_commit(self) -> None:
        """Make the COMMIT of the next write transaction fail."""
        ...

    # Besides: storing an event of type ``POISON`` fails inside the database (a constraint).


POISON = "Poison"


Opener = Callable[[Path, LogConfig | None, Clock | None], ContractLog]


@dataclass(frozen=True)
class Backend:
    name: str
    open: Opener
    open_early_check: Opener
    """Broken: checks expectations on a read before queueing, not inside the write transaction."""
    open_stale_batch: Opener
    """Broken: checks every append of a batch against the state the batch started from, blind
    to the earlier appends of the same batch."""
    open_faulty: Callable[[Path, LogConfig | None], FaultyLog]
    hold_write_lock: Callable[[Path], contextlib.AbstractContextManager[None]]
    """Another process takes the write lock and keeps it until the block exits."""
    waker_running: Callable[[ContractLog], bool]
    """Whether the machinery that notices other processes' commits is running for ``log``."""
    snapshot_pinned: Callable[[Path], bool]
    """Whether some connection holds a read snapshot of the log at ``path`` open (on SQLite:
    a TRUNCATE checkpoint cannot complete). Only meaningful while nobody writes."""
    pin_snapshot: Callable[[Path], contextlib.AbstractContextManager[None]]
    """Hold a read snapshot open on a connection of our own (to prove the detector works)."""


# -- SQLite ---------------------------------------------------------------------------------------


def _open_sqlite(path: Path, config: LogConfig | None, clock: Clock | None) -> ContractLog:
    return SqliteLog(path, config, clock=clock)


class _UncheckedWriter(SqliteWriter):
    def _check_expectation(self, stream: str, expect: Expectation, current: int) -> None:
        return None


class EarlyCheckSqliteLog(SqliteLog):
    """Broken on purpose: reads the stream version on a reader connection before queueing the
    append and trusts it, instead of checking inside the write transaction."""

    writer_class = _UncheckedWriter

    def _prepare(
        self,
        entries: Sequence[StreamAppend],
        key: str | None,
        outcome: Any,
        tracking: Tracking | None = None,
        after: Sequence[AppendTicket] = (),
    ) -> PreparedAppend:
        prepared = super()._prepare(entries, key, outcome, tracking, after)
        for entry in prepared.streams:
            current = self.stream_version_sync(entry.stream)
            expect = entry.expect
            held = (
                expect is Expect.ANY
                or (expect is Expect.NO_STREAM and current == 0)
                or (expect is Expect.STREAM_EXISTS and current > 0)
                or expect == current
            )
            if not held:
                raise WrongExpectedVersion(entry.stream, expect, current)
        return prepared


def _open_early_check(path: Path, config: LogConfig | None, clock: Clock | None) -> ContractLog:
    return EarlyCheckSqliteLog(path, config, clock=clock)


class _StaleBatchWriter(SqliteWriter):
    """Reads stream versions on a second connection, which sees only committed state."""

    def _current_version(self, conn: Any, stream: str, versions: dict[str, int]) -> int:
        if not hasattr(self, "_committed"):
            self._committed = apsw.Connection(self.path)
        row: Any = self._committed.execute(
            "SELECT max(version) FROM events WHERE stream = ?", (stream,)
        ).fetchone()
        return int(row[0] or 0)


class StaleBatchSqliteLog(SqliteLog):
    writer_class = _StaleBatchWriter

    def close(self) -> None:
        super().close()
        committed = getattr(self._write, "_committed", None)
        if committed is not None:
            committed.close()


def _open_stale_batch(path: Path, config: LogConfig | None, clock: Clock | None) -> ContractLog:
    return StaleBatchSqliteLog(path, config, clock=clock)


class _FaultyWriter(SqliteWriter):
    """When armed, leaves a deferred foreign-key violation in the transaction, so the real
    COMMIT statement fails (SQLite checks deferred constraints at COMMIT). A temporary trigger
    makes SQLite refuse to insert any event of type ``POISON``."""

    def __init__(self, conn: Any, *args: Any) -> None:
        super().__init__(conn, *args)
        self.armed = threading.Event()
        conn.execute(
            "PRAGMA foreign_keys=ON;"
            "CREATE TEMP TABLE doom_parent(id INTEGER PRIMARY KEY);"
            "CREATE TEMP TABLE doom_child(parent INTEGER "
            "REFERENCES doom_parent(id) DEFERRABLE INITIALLY DEFERRED);"
            "CREATE TEMP TRIGGER poison BEFORE INSERT ON main.events "
            f"WHEN NEW.type = '{POISON}' BEGIN SELECT RAISE(ABORT, 'poisoned event'); END"
        )

    def _commit(self, conn: Any, batch: Any, acknowledge: Any) -> None:
        if self.armed.is_set():
            self.armed.clear()
            conn.execute("INSERT INTO temp.doom_child(parent) VALUES (1)")
        super()._commit(conn, batch, acknowledge)


class FaultySqliteLog(SqliteLog):
    writer_class = _FaultyWriter

    def fail_next_commit(self) -> None:
        writer = self._write
        assert isinstance(writer, _FaultyWriter)
        writer.armed.set()


def _open_faulty(path: Path, config: LogConfig | None) -> FaultyLog:
    return FaultySqliteLog(path, config)


_LOCKER = """
import sys, apsw
conn = apsw.Connection(sys.argv[1])
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.read()
conn.execute("ROLLBACK")
"""


@contextlib.contextmanager
def _sqlite_write_lock(path: Path) -> Iterator[None]:
    locker = subprocess.Popen(
        [sys.executable, "-c", _LOCKER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert locker.stdin is not None and locker.stdout is not None
    try:
        line = locker.stdout.readline()
        assert line.strip() == "locked", f"lock holder did not take the lock: {line!r}"
        yield
    finally:
        locker.stdin.close()
        locker.wait(10)
    assert locker.returncode == 0, f"lock holder exited with {locker.returncode}"


def _sqlite_waker_running(log: ContractLog) -> bool:
    # The thread polling PRAGMA data_version for this log.
    assert isinstance(log, SqliteLog)
    thread = log._poller._thread
    return thread is not None and thread.is_alive()


def _sqlite_snapshot_pinned(path: Path) -> bool:
    conn = apsw.Connection(str(path))
    try:
        row: Any = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        busy, frames, _ = row
    finally:
        conn.close()
    return bool(busy) or frames != 0


@contextlib.contextmanager
def _sqlite_pin_snapshot(path: Path) -> Iterator[None]:
    conn = apsw.Connection(str(path))
    try:
        conn.execute("BEGIN")
        conn.execute("SELECT count(*) FROM events").fetchone()
        yield
        conn.execute("COMMIT")
    finally:
        conn.close()


SQLITE = Backend(
    name="sqlite",
    open=_open_sqlite,
    open_early_check=_open_early_check,
    open_stale_batch=_open_stale_batch,
    open_faulty=_open_faulty,
    hold_write_lock=_sqlite_write_lock,
    waker_running=_sqlite_waker_running,
    snapshot_pinned=_sqlite_snapshot_pinned,
    pin_snapshot=_sqlite_pin_snapshot,
)

BACKENDS: dict[str, Backend] = {SQLITE.name: SQLITE}


def open_backend(name: str, path: Path, config: LogConfig | None = None) -> ContractLog:
    """Open a log of the named backend (used by the suite's worker processes)."""
    return BACKENDS[name].open(path, config, None)

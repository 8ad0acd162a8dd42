"""The write transaction of the SQLite log: one group-commit batch, applied in order.

Each append of a batch sees the state left by the appends before it: its idempotency key is
looked up first, then every stream's expectation is checked, then its events are inserted. A
failing append writes nothing and does not fail its neighbours. Only after COMMIT returns are
the appends acknowledged; if COMMIT fails, every append of the batch gets that error.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import apsw
import msgspec

from facta.log.clock import Clock, format_time
from facta.log.codec import decode_json
from facta.log.errors import (
    CommitFailed,
    DuplicateEventId,
    FactaError,
    IdempotencyKeyReused,
    LogBusy,
    TrackingConflict,
    WrongExpectedVersion,
)
from facta.log.event import AppendResult, Expect, Expectation, StreamWritten
from facta.log.group_commit import Pending
from facta.log.metrics import LogMetrics
from facta.log.request import PreparedAppend, PreparedTracking
from facta.log.sqlite_schema import INSERT_EVENT
from facta.log.wakeup import CommitSignal

result_decoder = msgspec.json.Decoder(AppendResult)
_result_encoder = msgspec.json.Encoder()


class SqliteWriter:
    """Runs group-commit batches on the one writer connection of a process.

    Subclasses exist only in tests, as deliberately broken variants that the contract suite
    must catch.
    """

    def __init__(
        self,
        conn: Any,
        path: str,
        clock: Clock,
        metrics: LogMetrics,
        signal: CommitSignal,
    ) -> None:
        self._conn = conn
        self.path = path
        self.clock = clock
        self.metrics = metrics
        self.signal = signal

    def run_batch(self, batch: list[Pending], acknowledge: Callable[[list[Pending]], None]) -> None:
        conn = self._conn
        started = time.monotonic()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except apsw.BusyError:
            error = LogBusy(self.path, time.monotonic() - started)
            for pending in batch:
                pending.error = error
            return
        except apsw.Error as exc:
            for pending in batch:
                pending.error = CommitFailed(self.path, exc)
            return
        try:
            self._apply_all(conn, batch)
        except BaseException as exc:
            with contextlib.suppress(apsw.Error):
                conn.execute("ROLLBACK")
            for pending in batch:
                pending.result = None
                pending.error = CommitFailed(self.path, exc)
            return
        self._commit(conn, batch, acknowledge)

    def _commit(
        self, conn: Any, batch: list[Pending], acknowledge: Callable[[list[Pending]], None]
    ) -> None:
        try:
            conn.execute("COMMIT")
        except apsw.Error as exc:
            with contextlib.suppress(apsw.Error):
                conn.execute("ROLLBACK")
            failure = CommitFailed(self.path, exc)
            for pending in batch:
                pending.result = None
                pending.error = failure
            with self.metrics.lock:
                self.metrics.commit_failures += 1
            return
        self._count(batch)
        acknowledge(batch)
        if any(p.error is None and p.result.first_position is not None for p in batch):
            self.signal.notify()

    def _count(self, batch: list[Pending]) -> None:
        m = self.metrics
        with m.lock:
            m.batches += 1
            m.batch_appends.record(len(batch))
            for pending in batch:
                if pending.error is None:
                    m.appends += 1
                    if pending.result.replayed:
                        m.replays += 1
                    else:
                        m.events += pending.request.event_count
                elif isinstance(pending.error, WrongExpectedVersion):
                    m.conflicts += 1

    def _apply_all(self, conn: Any, batch: list[Pending]) -> None:
        """Apply each append in order; an unexpected SQLite error in one append fails only it."""
        while True:
            head = conn.execute("SELECT coalesce(max(position), 0) FROM events").fetchone()[0]
            versions: dict[str, int] = {}
            failed_at: int | None = None
            for index, pending in enumerate(batch):
                if pending.error is not None and not isinstance(pending.error, FactaError):
                    continue  # excluded by an earlier attempt
                pending.error = None
                pending.result = None
                try:
                    pending.result = self._apply(conn, pending.request, head, versions)
                except FactaError as exc:
                    pending.error = exc
                    continue
                except apsw.Error as exc:
                    pending.error = CommitFailed(self.path, exc)
                    failed_at = index
                    break
                if pending.result.last_position is not None and not pending.result.replayed:
                    head = pending.result.last_position
            if failed_at is None:
                return
            # Part of that append may be written: start the transaction over without it.
            conn.execute("ROLLBACK")
            conn.execute("BEGIN IMMEDIATE")

    def _current_version(self, conn: Any, stream: str, versions: dict[str, int]) -> int:
        version = versions.get(stream)
        if version is None:
            row = conn.execute(
                "SELECT max(version) FROM events WHERE stream = ?", (stream,)
            ).fetchone()
            version = row[0] or 0
            versions[stream] = version
        return version

    def _check_expectation(self, stream: str, expect: Expectation, current: int) -> None:
        if expect is Expect.ANY:
            return
        if expect is Expect.NO_STREAM:
            ok = current == 0
        elif expect is Expect.STREAM_EXISTS:
            ok = current > 0
        else:
            ok = current == expect
        if not ok:
            raise WrongExpectedVersion(stream, expect, current)

    def _apply(
        self, conn: Any, request: PreparedAppend, head: int, versions: dict[str, int]
    ) -> AppendResult:
        if request.key is not None:
            row = conn.execute(
                "SELECT digest, result, outcome FROM outcomes WHERE key = ?", (request.key,)
            ).fetchone()
            if row is not None:
                if row[0] != request.digest:
                    raise IdempotencyKeyReused(request.key)
                original = result_decoder.decode(row[1])
                outcome = None if row[2] is None else decode_json(row[2])
                return msgspec.structs.replace(
                    original, key=request.key, outcome=outcome, replayed=True
                )
        currents = []
        for entry in request.streams:
            current = self._current_version(conn, entry.stream, versions)
            self._check_expectation(entry.stream, entry.expect, current)
            currents.append(current)
        if request.tracking is not None:
            self._check_tracking(conn, request.tracking)
        if request.has_given_ids:
            self._check_given_ids(conn, request)
        now = format_time(self.clock.now())
        position = head
        written: list[StreamWritten] = []
        for entry, current in zip(request.streams, currents, strict=True):
            first = position + 1 if entry.events else None
            rows = []
            version = current
            for event in entry.events:
                position += 1
                version += 1
                rows.append(
                    (
                        position,
                        event.id,
                        entry.stream,
                        version,
                        event.type,
                        event.schema_version,
                        now,
                        event.data,
                        event.metadata,
                        event.causation_id,
                        event.correlation_id,
                    )
                )
            if len(rows) == 1:
                conn.execute(INSERT_EVENT, rows[0])
            elif rows:
                conn.executemany(INSERT_EVENT, rows)
            written.append(
                StreamWritten(entry.stream, version, first, position if entry.events else None)
            )
        for item in written:
            versions[item.stream] = item.version
        result = AppendResult(
            head + 1 if position > head else None,
            position if position > head else None,
            tuple(written),
        )
        if request.key is not None:
            conn.execute(
                "INSERT INTO outcomes(key, digest, result, outcome, recorded_at) "
                "VALUES (?,?,?,?,?)",
                (
                    request.key,
                    request.digest,
                    _result_encoder.encode(result).decode(),
                    request.outcome,
                    now,
                ),
            )
            outcome = None if request.outcome is None else decode_json(request.outcome)
            result = msgspec.structs.replace(result, key=request.key, outcome=outcome)
        if request.tracking is not None:
            t = request.tracking
            conn.execute(
                "INSERT INTO tracking(name, position, state, updated_at) VALUES (?,?,?,?) "
                "ON CONFLICT(name) DO UPDATE SET position=excluded.position, "
                "state=excluded.state, updated_at=excluded.updated_at",
                (t.name, t.position, t.state, now),
            )
        return result

    def _check_tracking(self, conn: Any, tracking: PreparedTracking) -> None:
        row = conn.execute(
            "SELECT position FROM tracking WHERE name = ?", (tracking.name,)
        ).fetchone()
        current = 0 if row is None else int(row[0])
        if current != tracking.expect:
            raise TrackingConflict(tracking.name, tracking.expect, current)

    def _check_given_ids(self, conn: Any, request: PreparedAppend) -> None:
        seen: set[str] = set()
        for entry in request.streams:
            for event in entry.events:
                if event.id in seen:
                    raise DuplicateEventId(event.id)
                seen.add(event.id)
                if (
                    event.id_given
                    and conn.execute("SELECT 1 FROM events WHERE id = ?", (event.id,)).fetchone()
                ):
                    raise DuplicateEventId(event.id)

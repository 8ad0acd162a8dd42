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
from typing import Any, Final
from uuid import UUID

import apsw
import msgspec

from facta.log.clock import Clock, now_text
from facta.log.codec import decode_json
from facta.log.errors import (
    CommitFailed,
    DependencyFailed,
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

_result_encoder = msgspec.json.Encoder()
# A stored result: [first, last, [[stream, version, first, last], ...]] (schema version 3); logs
# upgraded from version 2 still hold results written as the JSON object of an AppendResult.
_Stored = tuple[int | None, int | None, tuple[tuple[str, int, int | None, int | None], ...]]
_stored_decoder = msgspec.json.Decoder(_Stored)
_object_decoder = msgspec.json.Decoder(AppendResult)


def decode_result(text: str | bytes) -> AppendResult:
    """The result recorded with an idempotency key, in either stored form."""
    if text[:1] in ("{", b"{"):
        return _object_decoder.decode(text)
    first, last, streams = _stored_decoder.decode(text)
    return AppendResult(first, last, tuple([StreamWritten(*entry) for entry in streams]))


# The newest version of a stream, found by one index seek (max() would scan the stream).
STREAM_VERSION: Final = "SELECT version FROM events WHERE stream = ? ORDER BY version DESC LIMIT 1"
CLAIM_KEY: Final = (
    "INSERT INTO outcomes(key, digest, result, outcome, recorded_at) VALUES (?,?,?,?,?) "
    "ON CONFLICT(key) DO NOTHING"
)
# Stream versions remembered between batches; past this many the memory starts over.
KNOWN_STREAMS_LIMIT: Final = 65_536


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
        # What this connection committed last: the head and the versions of the streams it
        # touched, valid while no other connection has committed (SQLite's data version).
        self._known_head: int | None = None
        self._known_versions: dict[str, int] = {}
        self._known_data_version = -1
        self._staged: tuple[int, dict[str, int]] | None = None
        self._now = ""

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
        if conn.data_version() != self._known_data_version:
            self._forget()  # another connection committed: read the state from the file
        self._staged = None
        # One time for the batch: its appends are learned by the log in one commit.
        self._now = now_text(self.clock)
        try:
            self._apply_all(conn, batch)
        except BaseException as exc:
            self._forget()
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
            self._forget()
            with contextlib.suppress(apsw.Error):
                conn.execute("ROLLBACK")
            failure = CommitFailed(self.path, exc)
            for pending in batch:
                pending.result = None
                pending.error = failure
            with self.metrics.lock:
                self.metrics.commit_failures += 1
            return
        self._remember(conn)
        self._count(batch)
        acknowledge(batch)
        if any(p.error is None and p.result.first_position is not None for p in batch):
            self.signal.notify()

    def _forget(self) -> None:
        self._known_head = None
        self._known_versions = {}
        self._known_data_version = -1
        self._staged = None

    def _remember(self, conn: Any) -> None:
        """After COMMIT: keep the state the batch left, so the next batch need not read it."""
        if self._staged is None:
            self._forget()
            return
        head, versions = self._staged
        if len(self._known_versions) + len(versions) > KNOWN_STREAMS_LIMIT:
            self._known_versions = {}
        self._known_versions.update(versions)
        self._known_head = head
        self._known_data_version = conn.data_version()
        self._staged = None

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
            head = self._known_head
            if head is None:
                head = conn.execute("SELECT coalesce(max(position), 0) FROM events").fetchone()[0]
            versions: dict[str, int] = {}
            failed_at: int | None = None
            for index, pending in enumerate(batch):
                if isinstance(pending.error, CommitFailed):
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
                self._staged = (head, versions)
                return
            # Part of that append may be written: start the transaction over without it.
            conn.execute("ROLLBACK")
            conn.execute("BEGIN IMMEDIATE")
            if conn.data_version() != self._known_data_version:
                self._forget()

    def _current_version(self, conn: Any, stream: str, versions: dict[str, int]) -> int:
        version = versions.get(stream)
        if version is None:
            version = self._known_versions.get(stream)
            if version is None:
                row = conn.execute(STREAM_VERSION, (stream,)).fetchone()
                version = 0 if row is None else row[0]
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
        currents = [self._current_version(conn, e.stream, versions) for e in request.streams]
        now = self._now
        # The result this append has if it succeeds: positions and versions follow from the
        # head and the current versions.
        position = head
        written: list[tuple[str, int, int | None, int | None]] = []
        for entry, current in zip(request.streams, currents, strict=True):
            count = len(entry.events)
            first = position + 1 if count else None
            position += count
            written.append((entry.stream, current + count, first, position if count else None))
        first_position = head + 1 if position > head else None
        last_position = position if position > head else None
        if request.key is not None:
            # Claiming the key is its lookup: one statement instead of a SELECT and an INSERT
            # when the key is new. A key already there is replayed or refused, before any
            # expectation is checked; a claim is taken back if the append then fails.
            stored = _result_encoder.encode((first_position, last_position, written)).decode()
            conn.execute(CLAIM_KEY, (request.key, request.digest, stored, request.outcome, now))
            if conn.changes() == 0:
                return self._replay(conn, request)
        try:
            for entry, current in zip(request.streams, currents, strict=True):
                self._check_expectation(entry.stream, entry.expect, current)
            if request.after:
                self._check_after(request, currents)
            if request.tracking is not None:
                self._check_tracking(conn, request.tracking)
            if request.has_given_ids:
                self._check_given_ids(conn, request)
        except FactaError:
            if request.key is not None:
                conn.execute("DELETE FROM outcomes WHERE key = ?", (request.key,))
            raise
        # The rows of every stream of the append, inserted by one statement call.
        position = head
        rows = []
        for entry, current in zip(request.streams, currents, strict=True):
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
        for item in written:
            versions[item[0]] = item[1]
        if request.tracking is not None:
            t = request.tracking
            conn.execute(
                "INSERT INTO tracking(name, position, state, updated_at) VALUES (?,?,?,?) "
                "ON CONFLICT(name) DO UPDATE SET position=excluded.position, "
                "state=excluded.state, updated_at=excluded.updated_at",
                (t.name, t.position, t.state, now),
            )
        streams = tuple([StreamWritten(*item) for item in written])
        if request.key is None:
            return AppendResult(first_position, last_position, streams)
        outcome = None if request.outcome is None else decode_json(request.outcome)
        return AppendResult(first_position, last_position, streams, request.key, outcome)

    def _check_after(self, request: PreparedAppend, currents: list[int]) -> None:
        """Every earlier append this one was decided on must be written before it.

        They were queued before it, so each is applied already: earlier in this batch, or in
        a batch that committed (or failed) before this one ran.
        """
        for ticket in request.after:
            if not ticket.written():
                first = request.streams[0] if request.streams else None
                stream = first.stream if first is not None else ""
                expect = first.expect if first is not None else Expect.ANY
                raise DependencyFailed(stream, expect, currents[0] if currents else 0)

    def _replay(self, conn: Any, request: PreparedAppend) -> AppendResult:
        """The original result of a key used before, if this is the same request."""
        row = conn.execute(
            "SELECT digest, result, outcome FROM outcomes WHERE key = ?", (request.key,)
        ).fetchone()
        if row[0] != request.digest:
            raise IdempotencyKeyReused(request.key or "")
        original = decode_result(row[1])
        outcome = None if row[2] is None else decode_json(row[2])
        return msgspec.structs.replace(original, key=request.key, outcome=outcome, replayed=True)

    def _check_tracking(self, conn: Any, tracking: PreparedTracking) -> None:
        row = conn.execute(
            "SELECT position FROM tracking WHERE name = ?", (tracking.name,)
        ).fetchone()
        current = 0 if row is None else int(row[0])
        if current != tracking.expect:
            raise TrackingConflict(tracking.name, tracking.expect, current)

    def _check_given_ids(self, conn: Any, request: PreparedAppend) -> None:
        seen: set[bytes] = set()
        for entry in request.streams:
            for event in entry.events:
                if event.id in seen:
                    raise DuplicateEventId(str(UUID(bytes=event.id)))
                seen.add(event.id)
                if (
                    event.id_given
                    and conn.execute("SELECT 1 FROM events WHERE id = ?", (event.id,)).fetchone()
                ):
                    raise DuplicateEventId(str(UUID(bytes=event.id)))

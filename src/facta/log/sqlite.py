"""The embedded log: one SQLite file in WAL mode, one writer, group commit.

Positions are SQLite rowids assigned under the write lock, so they are gap-free and follow
commit order. Every write transaction is ``BEGIN IMMEDIATE``; expectations and idempotency keys
are checked inside it, against a state that includes the earlier appends of the same batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import operator
import os
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from datetime import datetime
from typing import Any, Final, ParamSpec, TypeVar
from uuid import UUID

import apsw
import msgspec

from facta.log.clock import Clock, SystemClock
from facta.log.codec import decode_json, encode_json
from facta.log.config import LogConfig
from facta.log.errors import (
    InvalidInput,
    LogBusy,
    LogClosed,
)
from facta.log.event import (
    AppendResult,
    Checkpoint,
    Expect,
    Expectation,
    NewEvent,
    OutcomeRecord,
    RecordedEvent,
    StreamAppend,
    Tracking,
    check_event_type,
    check_stream_name,
)
from facta.log.group_commit import AppendTicket, GroupCommit, Pending
from facta.log.metrics import LogMetrics
from facta.log.protocol import LogStats, StreamInfo
from facta.log.readahead import FetchedPage, PageRequest, ReadAhead
from facta.log.request import PreparedAppend, prepare_append
from facta.log.sqlite_schema import (
    connect,
    create_schema,
    effective_durability,
    page_query,
)
from facta.log.sqlite_write import STREAM_VERSION, SqliteWriter, decode_result
from facta.log.subscription import subscribe_log
from facta.log.wakeup import CommitSignal, DataVersionPoller

# How long the writer keeps trying, before one batch, to restart a WAL past its hold size.
RESTART_PATIENCE = 0.1

P = ParamSpec("P")
R = TypeVar("R")

_page_decoder = msgspec.json.Decoder(list[RecordedEvent])


class SqliteLog:
    """A log in one SQLite file. Thread-safe; async methods for asyncio, ``*_sync`` for scripts.

    >>> log = SqliteLog(":memory:")  # doctest: +SKIP
    """

    writer_class: type[SqliteWriter] = SqliteWriter

    def __init__(
        self,
        path: str | os.PathLike[str],
        config: LogConfig | None = None,
        *,
        clock: Clock | None = None,
        vfs: str | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self.config = config or LogConfig()
        self.clock: Clock = clock or SystemClock()
        self.metrics = LogMetrics()
        self._vfs = vfs
        self._closed = False
        self._read_ahead = ReadAhead(self._fetch_request)
        self._writer = self._open(writer=True)
        create_schema(self._writer)
        self._writer.set_wal_hook(self._on_wal_commit)
        self._readers: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._all_readers: list[Any] = []
        self._readers_lock = threading.Lock()
        self._writer_conn_lock = threading.Lock()
        self._poll_conn: Any = None
        self.signal = CommitSignal(start_poller=self._ensure_poller)
        self._poller = DataVersionPoller(
            self.signal, self._data_version, self.config.poll_interval, self._close_poll_conn
        )
        self._wal_pages = 0
        self._copied_pages = 0  # of the WAL's frames, those a checkpoint has copied
        self._page_size = self._writer.execute("PRAGMA page_size").fetchone()[0]
        # The WAL is restarted (the writer paused for a moment) once it is this large; smaller
        # checkpoints only copy it into the database file, beside the appends.
        checkpoint, most = self.config.wal_checkpoint_bytes, self.config.wal_max_bytes
        self._restart_bytes = min(2 * checkpoint, max(checkpoint, most // 2))
        # Past this, the writer restarts the WAL itself before its next batch.
        self._hold_bytes = max(self._restart_bytes, most * 3 // 4)
        self._restart_due = False
        self._checkpoint_wanted = threading.Event()
        self._checkpointer = threading.Thread(
            target=self._checkpoint_loop, name="facta-checkpointer", daemon=True
        )
        self._checkpointer.start()
        self._write = self.writer_class(
            self._writer, self.path, self.clock, self.metrics, self.signal
        )
        self._group = GroupCommit(
            self._run_batch,
            queue_limit=self.config.queue_limit,
            max_batch_appends=self.config.max_batch_appends,
            max_batch_events=self.config.max_batch_events,
            append_timeout=self.config.append_timeout,
            metrics=self.metrics,
            name=os.path.basename(self.path),
        )

    def _open(self, *, writer: bool) -> Any:
        started = time.monotonic()
        try:
            return connect(self.path, self.config, writer=writer, vfs=self._vfs)
        except apsw.BusyError as exc:
            raise LogBusy(self.path, time.monotonic() - started) from exc
        except apsw.CantOpenError as exc:
            raise InvalidInput(f"cannot open log file {self.path!r}: {exc}") from None

    # -- appending ------------------------------------------------------------------------------

    def _prepare(
        self,
        entries: Sequence[StreamAppend],
        key: str | None,
        outcome: Any,
        tracking: Tracking | None = None,
        after: Sequence[AppendTicket] = (),
    ) -> PreparedAppend:
        if self._closed:
            raise LogClosed(f"log {self.path} is closed")
        for ticket in after:
            if not isinstance(ticket, AppendTicket):
                raise InvalidInput(f"after= takes AppendTicket values, found {ticket!r}")
        return prepare_append(
            entries,
            key=key,
            outcome=outcome,
            config=self.config,
            tracking=tracking,
            after=tuple(after),
        )

    async def append(
        self,
        stream: str,
        events: Sequence[NewEvent],
        *,
        expect: Expectation = Expect.ANY,
        key: str | None = None,
        outcome: Any = None,
    ) -> AppendResult:
        """Append events to one stream if ``expect`` holds, atomically."""
        request = self._prepare([StreamAppend(stream, tuple(events), expect)], key, outcome)
        result: AppendResult = await self._group.submit_async(request)
        return result

    async def append_many(
        self,
        entries: Sequence[StreamAppend],
        *,
        key: str | None = None,
        outcome: Any = None,
        tracking: Tracking | None = None,
        ticket: AppendTicket | None = None,
        after: Sequence[AppendTicket] = (),
    ) -> AppendResult:
        """Append to several streams, each with its own expectation: all or nothing.

        ``tracking`` is written (upserted) in the same transaction, if its ``expect`` holds.
        ``ticket`` (a fresh :class:`AppendTicket`) is bound to this append as it is queued, so
        that appends decided while it is in flight can name it in their ``after``. An append
        with ``after`` is refused with :class:`DependencyFailed` unless every append it names
        was written before it (not refused, not replayed), in commit order.
        """
        request = self._prepare(entries, key, outcome, tracking, after)
        result: AppendResult = await self._group.submit_async(request, ticket)
        return result

    def append_sync(
        self,
        stream: str,
        events: Sequence[NewEvent],
        *,
        expect: Expectation = Expect.ANY,
        key: str | None = None,
        outcome: Any = None,
    ) -> AppendResult:
        request = self._prepare([StreamAppend(stream, tuple(events), expect)], key, outcome)
        result: AppendResult = self._group.submit(request)
        return result

    def append_many_sync(
        self,
        entries: Sequence[StreamAppend],
        *,
        key: str | None = None,
        outcome: Any = None,
        tracking: Tracking | None = None,
    ) -> AppendResult:
        request = self._prepare(entries, key, outcome, tracking)
        result: AppendResult = self._group.submit(request)
        return result

    def hold_writer(self) -> contextlib.AbstractContextManager[None]:
        """Test hook: queue appends without running them until the block exits."""
        return self._group.hold()

    def queued_appends(self) -> int:
        return self._group.queued()

    # -- reading --------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _reader(self) -> Iterator[Any]:
        if self._closed:
            raise LogClosed(f"log {self.path} is closed")
        try:
            conn = self._readers.get_nowait()
        except queue.Empty:
            conn = self._open(writer=False)
            with self._readers_lock:
                self._all_readers.append(conn)
        try:
            yield conn
        finally:
            self._readers.put(conn)

    def read_stream_sync(
        self,
        stream: str,
        *,
        from_version: int = 1,
        limit: int | None = None,
        backward: bool = False,
    ) -> list[RecordedEvent]:
        """Events of one stream from ``from_version``, forward (or backward), at most ``limit``."""
        check_stream_name(stream)
        count = -1 if limit is None else _check_limit(limit)
        with self._reader() as conn:
            if backward:
                sql = page_query("stream = ? AND version <= ?", "version", "DESC")
            else:
                sql = page_query("stream = ? AND version >= ?", "version")
            text = conn.execute(sql, (stream, from_version, count)).fetchall()[0][0]
        return _decode_page(text, _VERSION, descending=backward)

    async def read_stream(
        self,
        stream: str,
        *,
        from_version: int = 1,
        limit: int | None = None,
        backward: bool = False,
    ) -> list[RecordedEvent]:
        return await self._in_thread(
            self.read_stream_sync,
            stream,
            from_version=from_version,
            limit=limit,
            backward=backward,
        )

    def read_all_sync(
        self,
        *,
        after: int = 0,
        limit: int = 1000,
        types: Sequence[str] | None = None,
        stream_prefix: str | None = None,
    ) -> list[RecordedEvent]:
        """Events of the whole log after position ``after``, in position order."""
        page = self._fetch_page(after, _check_limit(limit), types, stream_prefix, None)
        return _decode_page(page.text)

    async def read_all(
        self,
        *,
        after: int = 0,
        limit: int = 1000,
        types: Sequence[str] | None = None,
        stream_prefix: str | None = None,
    ) -> list[RecordedEvent]:
        # The rows are fetched in a thread and decoded here: decoding where the events are used
        # (and later freed) measured a third cheaper than handing decoded events across threads.
        wanted = PageRequest(after, _check_limit(limit), tuple(types or ()), stream_prefix)
        if self._closed:  # a page read ahead before the close is not served either
            raise LogClosed(f"log {self.path} is closed")
        page = await self._read_ahead.take(wanted)
        if page is None:
            page = await self._in_thread(self._fetch_request, wanted)
        if page.size == wanted.limit:
            # A full page: the caller is likely scanning. Its next page is read in a worker
            # thread (SQLite builds it without the GIL) while this one is decoded here.
            self._read_ahead.start(wanted._replace(after=page.scanned))
        return _decode_page(page.text)

    def _fetch_request(
        self, wanted: PageRequest, querying: Callable[[], object] | None = None
    ) -> FetchedPage:
        return self._fetch_page(
            wanted.after, wanted.limit, wanted.types, wanted.prefix, None, querying
        )

    def _fetch_page(
        self,
        after: int,
        limit: int,
        types: Sequence[str] | None,
        stream_prefix: str | None,
        scan_window: int | None,
        querying: Callable[[], object] | None = None,
    ) -> FetchedPage:
        """One page after ``after``, undecoded (for ``_decode_page``); ``querying`` is called
        just before the statement runs (see ``ReadAhead``)."""
        clauses = ["position > ?"]
        params: list[Any] = [after]
        if scan_window is not None:
            clauses.append("position <= ?")
            params.append(after + scan_window)
        if types:
            names = [check_event_type(t) for t in types]
            clauses.append(f"type IN ({','.join('?' * len(names))})")
            params.extend(names)
        if stream_prefix:
            clauses.append("substr(stream, 1, ?) = ?")
            params.extend([len(stream_prefix), stream_prefix])
        params.append(limit)
        sql = page_query(" AND ".join(clauses))
        with self._reader() as conn:
            if querying is not None:
                querying()
            ((text, count, last, head),) = conn.execute(sql, params).fetchall()
        if count >= limit:
            scanned = int(last)
        elif scan_window is not None:
            scanned = max(after, min(head, after + scan_window))
        else:
            scanned = max(head, after)
        return FetchedPage(text, int(count), scanned, int(head))

    def head_sync(self) -> int:
        """The position of the last committed event (0 for an empty log)."""
        with self._reader() as conn:
            return int(conn.execute("SELECT coalesce(max(position), 0) FROM events").fetchone()[0])

    async def head(self) -> int:
        return await self._in_thread(self.head_sync)

    def stream_version_sync(self, stream: str) -> int:
        """The version of a stream: the number of its events, 0 if it has none."""
        check_stream_name(stream)
        with self._reader() as conn:
            row = conn.execute(STREAM_VERSION, (stream,)).fetchone()
            return 0 if row is None else int(row[0])

    async def stream_version(self, stream: str) -> int:
        return await self._in_thread(self.stream_version_sync, stream)

    def lookup_sync(self, key: str) -> OutcomeRecord | None:
        """The outcome recorded with an idempotency key, or None if the key was never used."""
        with self._reader() as conn:
            row = conn.execute(
                "SELECT result, outcome, recorded_at FROM outcomes WHERE key = ?", (key,)
            ).fetchone()
        return None if row is None else _outcome_record(key, *row)

    def lookup_many_sync(self, keys: Sequence[str]) -> list[OutcomeRecord | None]:
        """``lookup_sync`` of each key, read in one statement (one snapshot for all of them)."""
        if not keys:
            return []
        with self._reader() as conn:
            rows = conn.execute(
                "SELECT key, result, outcome, recorded_at FROM outcomes "
                "WHERE key IN (SELECT value FROM json_each(?))",
                (encode_json(list(keys)).decode(),),
            ).fetchall()
        found = {row[0]: _outcome_record(*row) for row in rows}
        return [found.get(key) for key in keys]

    async def lookup(self, key: str) -> OutcomeRecord | None:
        return await self._in_thread(self.lookup_sync, key)

    async def lookup_many(self, keys: Sequence[str]) -> list[OutcomeRecord | None]:
        return await self._in_thread(self.lookup_many_sync, keys)

    def tracking_sync(self, name: str) -> Tracking | None:
        """The tracking record ``name`` (``expect`` set to its position), or None."""
        with self._reader() as conn:
            row = conn.execute(
                "SELECT position, state FROM tracking WHERE name = ?", (name,)
            ).fetchone()
        if row is None:
            return None
        return Tracking(name, int(row[0]), decode_json(row[1]), int(row[0]))

    def tracking_names_sync(self) -> list[str]:
        with self._reader() as conn:
            return [r[0] for r in conn.execute("SELECT name FROM tracking ORDER BY name")]

    def events_by_id_sync(self, ids: Sequence[str]) -> list[RecordedEvent]:
        """The events with these ids (text that is not a UUID matches no event)."""
        blobs: list[Any] = []
        for ident in ids:
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                blobs.append(UUID(str(ident)).bytes)
        return self._select_events("id IN ({})", blobs)

    def caused_by_sync(self, ids: Sequence[str]) -> list[RecordedEvent]:
        """Events whose ``causation_id`` is one of ``ids`` (indexed)."""
        return self._select_events("causation_id IN ({})", list(ids))

    def correlated_sync(self, correlation_id: str) -> list[RecordedEvent]:
        """Events whose ``correlation_id`` is ``correlation_id`` (indexed)."""
        return self._select_events("correlation_id IN ({})", [correlation_id])

    def _select_events(self, where: str, values: list[Any]) -> list[RecordedEvent]:
        if not values:
            return []
        clause = where.format(",".join("?" * len(values)))
        with self._reader() as conn:
            text = conn.execute(page_query(clause), [*values, -1]).fetchall()[0][0]
        return _decode_page(text)

    def streams_sync(self, *, prefix: str | None = None, limit: int = 1000) -> list[StreamInfo]:
        """Streams with their version, last position and last time, by name."""
        where, params = (
            ("WHERE substr(stream, 1, ?) = ?", [len(prefix), prefix]) if prefix else ("", [])
        )
        sql = (
            "SELECT e.stream, e.version, e.position, e.recorded_at FROM "
            f"(SELECT stream, max(version) AS v FROM events {where} GROUP BY stream "
            "ORDER BY stream LIMIT ?) s JOIN events e ON e.stream = s.stream AND e.version = s.v "
            "ORDER BY e.stream"
        )
        with self._reader() as conn:
            rows = conn.execute(sql, [*params, _check_limit(limit)]).fetchall()
        return [StreamInfo(r[0], r[1], r[2], _parse_time(r[3])) for r in rows]

    # -- subscriptions --------------------------------------------------------------------------

    def subscribe(
        self,
        *,
        after: int = 0,
        types: Sequence[str] | None = None,
        stream_prefix: str | None = None,
        page_size: int | None = None,
        idle_timeout: float = 1.0,
    ) -> AsyncIterator[RecordedEvent]:
        """Every event after ``after``: catch up, then follow live. No gap, no duplicate.

        Pages of at most ``page_size`` events are read on demand, so a slow consumer never makes
        the subscription hold more than one page.
        """
        return subscribe_log(
            self,
            after=after,
            types=types,
            stream_prefix=stream_prefix,
            page_size=page_size or self.config.page_size,
            checkpoints=False,
            idle_timeout=idle_timeout,
        )

    def subscribe_with_checkpoints(
        self,
        *,
        after: int = 0,
        types: Sequence[str] | None = None,
        stream_prefix: str | None = None,
        page_size: int | None = None,
        checkpoint_every: int | None = None,
        idle_timeout: float = 1.0,
    ) -> AsyncIterator[RecordedEvent | Checkpoint]:
        """Like :meth:`subscribe`, also yielding a :class:`Checkpoint` at least every
        ``checkpoint_every`` scanned events, so a consumer of rare events can save progress."""
        return subscribe_log(
            self,
            after=after,
            types=types,
            stream_prefix=stream_prefix,
            page_size=page_size or self.config.page_size,
            checkpoints=True,
            checkpoint_every=checkpoint_every or self.config.checkpoint_every,
            idle_timeout=idle_timeout,
        )

    async def read_page(
        self,
        after: int,
        limit: int,
        types: Sequence[str] | None,
        stream_prefix: str | None,
        scan_window: int | None,
    ) -> tuple[list[RecordedEvent], int, int]:
        page = await self._in_thread(
            self._fetch_page, after, limit, types, stream_prefix, scan_window
        )
        return _decode_page(page.text), page.scanned, page.head

    def _ensure_poller(self) -> None:
        if not self._closed:
            self._poller.ensure_running()

    def _data_version(self) -> int:
        if self._poll_conn is None:
            self._poll_conn = self._open(writer=False)
        return int(self._poll_conn.execute("PRAGMA data_version").fetchone()[0])

    def _close_poll_conn(self) -> None:
        if self._poll_conn is not None:
            self._poll_conn.close()
            self._poll_conn = None

    # -- WAL checkpoints ------------------------------------------------------------------------

    def _on_wal_commit(self, conn: Any, name: str, pages: int) -> int:
        if pages < self._wal_pages:
            self._copied_pages = 0  # the WAL was started anew (by a checkpoint, or by SQLite)
        self._wal_pages = pages
        # Set once: while a checkpoint runs, every commit would otherwise wake no one at a cost.
        wanted = self._checkpoint_wanted
        if self._uncopied_bytes() >= self.config.wal_checkpoint_bytes and not wanted.is_set():
            wanted.set()
        if pages * self._page_size >= self._hold_bytes:
            self._restart_due = True  # by the writer, before its next batch (see _run_batch)
        return apsw.SQLITE_OK

    def _run_batch(
        self, batch: list[Pending], acknowledge: Callable[[list[Pending]], None]
    ) -> None:
        """One group-commit batch, in the writer's thread; first, if the WAL grew past
        ``_hold_bytes`` (the background checkpoints fell behind), restart it here."""
        if self._restart_due:
            self._restart_before_batch(self._writer)
        self._write.run_batch(batch, acknowledge)

    def _restart_before_batch(self, conn: Any) -> None:
        """Restart the WAL in the writer's thread before its next batch: back-pressure that keeps
        the WAL under ``wal_max_bytes``, as SQLite's own automatic checkpoints do.

        SQLite answers "busy" at once, without its busy handler, while another checkpoint runs
        (the background thread's copy) and, inside a commit's WAL hook, while a reader holds the
        WAL. So it is done here, not in the hook, and tried again every millisecond while busy,
        for at most :data:`RESTART_PATIENCE` seconds per batch (each try waiting 10 ms for
        readers): a slow copy or a live subscriber no longer keeps the WAL growing, and a
        reader that never lets go delays each batch by that much at most.
        """
        deadline = time.monotonic() + RESTART_PATIENCE
        conn.set_busy_timeout(10)
        try:
            while True:
                with contextlib.suppress(apsw.Error):
                    if self._restart_wal(conn):
                        self._restart_due = False
                        return
                if time.monotonic() >= deadline:
                    return  # tried again before the next batch
                time.sleep(0.001)
        finally:
            conn.set_busy_timeout(int(self.config.lock_timeout * 1000))

    def _restart_wal(self, conn: Any) -> bool:
        """Copy what is left of the WAL and have the next commit write it from its start (the
        caller keeps the writer from committing meanwhile); False if a reader held it."""
        busy = conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()[0][0]
        if not busy:
            self._wal_pages = self._copied_pages = 0
            with self.metrics.lock:
                self.metrics.wal_restarts += 1
        return not busy

    def _uncopied_bytes(self) -> int:
        """How much of the WAL no checkpoint has copied into the database file yet."""
        return int(max(0, self._wal_pages - self._copied_pages) * self._page_size)

    def _checkpoint_loop(self) -> None:
        conn: Any = None
        try:
            while not self._closed:
                if not self._checkpoint_wanted.wait(0.5):
                    continue
                self._checkpoint_wanted.clear()
                if self._closed:
                    break
                if conn is None:
                    conn = self._open(writer=False)
                if self._uncopied_bytes() < self.config.wal_checkpoint_bytes:
                    continue  # a restart since the request already emptied the WAL
                if not self._checkpoint(conn):
                    time.sleep(0.05)  # a reader holds the WAL: let it finish
        finally:
            if conn is not None:
                conn.close()

    def _checkpoint(self, conn: Any) -> bool:
        """Copy the WAL into the database file; past the restart size, also have the next
        commit write the WAL anew from its start.

        Copying (PASSIVE) goes on beside the appends. Restarting the WAL needs the writer paused
        (a RESTART waits for the copy of the last frames and their sync), and every append in
        flight waits that long, so it is done only every :attr:`_restart_bytes` of WAL, after a
        second copy has taken the frames committed during the first: the pause covers only
        the few committed after. Overwriting blocks the WAL file already has syncs faster than
        growing it.
        """
        try:
            conn.set_busy_timeout(50)
            busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()[0]
            self._copied_pages = max(self._copied_pages, copied)
            if frames * self._page_size < self._restart_bytes:
                with self.metrics.lock:
                    self.metrics.checkpoints += 1
                return not busy
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            conn.set_busy_timeout(10)
            with self._group_lock():
                restarted = self._restart_wal(conn)
        except apsw.Error:
            return False
        with self.metrics.lock:
            self.metrics.checkpoints += 1
        return restarted

    def checkpoint_sync(self, mode: str = "TRUNCATE") -> None:
        """Copy the WAL into the database file now (``PASSIVE``, ``RESTART`` or ``TRUNCATE``)."""
        if mode not in ("PASSIVE", "FULL", "RESTART", "TRUNCATE"):
            raise InvalidInput(f"checkpoint mode must be PASSIVE|FULL|RESTART|TRUNCATE: {mode!r}")
        with self._reader() as conn:
            conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchall()

    def _wal_size(self) -> int:
        try:
            return os.path.getsize(self.path + "-wal")
        except OSError:
            return 0

    # -- stats and lifecycle --------------------------------------------------------------------

    def stats_sync(self) -> LogStats:
        with self._reader() as conn:
            events = conn.execute("SELECT coalesce(max(position), 0) FROM events").fetchone()[0]
            streams = conn.execute(
                "SELECT count(*) FROM (SELECT DISTINCT stream FROM events)"
            ).fetchone()[0]
            keys = conn.execute("SELECT count(*) FROM outcomes").fetchone()[0]
        try:
            size = os.path.getsize(self.path)
        except OSError:
            size = 0
        with self._group_lock():
            durability = effective_durability(self._writer)
        return LogStats(
            path=self.path,
            events=int(events),
            streams=int(streams),
            outcomes=int(keys),
            file_bytes=size,
            wal_bytes=self._wal_size(),
            durability=self.config.durability,
            effective=durability,
            sqlite_version=apsw.sqlite_lib_version(),
            process=self.metrics.snapshot(),
        )

    async def stats(self) -> LogStats:
        return await self._in_thread(self.stats_sync)

    @contextlib.contextmanager
    def _group_lock(self) -> Iterator[None]:
        # hold() keeps the writer off its connection but lets several holders in at once; the
        # lock keeps two readers of the writer connection (stats from two threads) apart.
        with self._writer_conn_lock, self._group.hold():
            yield

    def effective_durability(self) -> dict[str, Any]:
        """``synchronous``, ``journal_mode``, … as read back from the writer connection."""
        with self._group_lock():
            return effective_durability(self._writer)

    async def _in_thread(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        return await asyncio.to_thread(fn, *args, **kwargs)

    def close(self) -> None:
        if self._closed:
            return
        self._group.close()
        self._closed = True
        self._checkpoint_wanted.set()
        self._checkpointer.join(5.0)
        self._poller.close()
        with self._readers_lock:
            readers, self._all_readers = self._all_readers, []
        # A read started before close may still run in another thread (a worker of an event
        # loop that is gone, say): give it a moment to finish, then leave its connection to be
        # closed when it is collected rather than fail the close.
        deadline = time.monotonic() + 5.0
        for conn in readers:
            while True:
                try:
                    conn.close()
                    break
                except apsw.ThreadingViolationError:
                    if time.monotonic() >= deadline:
                        break
                    time.sleep(0.01)
        self._writer.close()

    def __enter__(self) -> SqliteLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> SqliteLog:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.close)


_POSITION: Final[Callable[[RecordedEvent], int]] = operator.attrgetter("position")
_VERSION: Final[Callable[[RecordedEvent], int]] = operator.attrgetter("version")


def _decode_page(
    text: str | None, key: Callable[[RecordedEvent], int] = _POSITION, *, descending: bool = False
) -> list[RecordedEvent]:
    """Events from the text of a ``page_query`` page, in one decode, in the query's order.

    The cyclic garbage collector is paused for the decode: a page allocates one ``UUID`` per
    event, and the collections those allocations trigger cost more than the decoding itself
    (measured 0.8-1.2 us per event). Decoded JSON values cannot form cycles, so the pause
    leaves nothing behind; a collector another thread paused stays paused.
    """
    if text is None:
        return []
    if not gc.isenabled():
        return _decode_in_order(text, key, descending)
    gc.disable()
    try:
        # The order check allocates too: inside the pause, or its first allocation would run a
        # collection over the page's young dicts (a third more CPU per event, measured).
        return _decode_in_order(text, key, descending)
    finally:
        gc.enable()


def _decode_in_order(
    text: str, key: Callable[[RecordedEvent], int], descending: bool
) -> list[RecordedEvent]:
    events: list[RecordedEvent] = _page_decoder.decode(text)
    if not _in_order(list(map(key, events)), descending=descending):
        events.sort(key=key, reverse=descending)
    return events


def _in_order(keys: list[int], *, descending: bool = False) -> bool:
    """Whether ``keys`` strictly increase (or, ``descending``, strictly decrease)."""
    if descending:
        return all(map(operator.gt, keys, itertools.islice(keys, 1, None)))
    return all(map(operator.lt, keys, itertools.islice(keys, 1, None)))


def _outcome_record(
    key: str, result: str, outcome_text: str | None, recorded_at: str
) -> OutcomeRecord:
    """An ``outcomes`` row as the record ``lookup`` returns."""
    outcome = None if outcome_text is None else decode_json(outcome_text)
    replaced = msgspec.structs.replace(decode_result(result), key=key, outcome=outcome)
    return OutcomeRecord(key, replaced, outcome, _parse_time(recorded_at))


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _check_limit(limit: int) -> int:
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise InvalidInput(f"limit must be a positive integer, found {limit!r}")
    return limit

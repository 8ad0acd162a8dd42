"""The WAL stays bounded: background checkpoints copy it and restart it, even while a live
subscriber reads the log the whole time (its reads pin WAL frames while they run)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from pathlib import Path
from typing import Any

import apsw

from facta.log import LogConfig, NewEvent, SqliteLog

KIB = 1024
CONFIG = LogConfig(wal_checkpoint_bytes=128 * KIB, wal_max_bytes=512 * KIB)
APPENDS = 300
EVENTS_PER_APPEND = 10  # ~10 KiB of data per append: ~3 MiB in all, six times the bound


class NeverRestarts(SqliteLog):
    """Broken: its background checkpoints do nothing, and its writer never restarts the WAL."""

    def _checkpoint(self, conn: Any) -> bool:
        return True

    def _restart_before_batch(self, conn: Any) -> None:
        pass


def _appends_with_a_live_subscriber(log: SqliteLog) -> tuple[int, int]:
    """Append while a subscriber follows; returns the largest WAL seen and the events read."""
    wal = log.path + "-wal"
    total = APPENDS * EVENTS_PER_APPEND

    async def main() -> tuple[int, int]:
        seen = 0

        async def follow() -> None:
            nonlocal seen
            async for _event in log.subscribe(after=0):
                seen += 1
                if seen == total:
                    return

        follower = asyncio.ensure_future(follow())
        largest = 0
        for n in range(APPENDS):
            events = [NewEvent(type="Filled", data={"n": n, "pad": "x" * 1000})] * EVENTS_PER_APPEND
            await log.append(f"s-{n % 7}", events)
            largest = max(largest, os.path.getsize(wal))
            await asyncio.sleep(0)  # the subscriber reads as the appends go on
        await asyncio.wait_for(follower, 30)
        return largest, seen

    return asyncio.run(main())


def test_the_wal_stays_under_its_bound_while_a_subscriber_follows(tmp_path: Path) -> None:
    with SqliteLog(tmp_path / "bounded.db", CONFIG) as log:
        largest, seen = _appends_with_a_live_subscriber(log)
        process = log.stats_sync().process
    assert seen == APPENDS * EVENTS_PER_APPEND
    assert largest <= CONFIG.wal_max_bytes, f"the WAL reached {largest} bytes"
    assert process["wal_restarts"] >= 3, process  # copies between the restarts


def test_the_bound_check_catches_a_log_whose_checkpoints_never_restart_the_wal(
    tmp_path: Path,
) -> None:
    with NeverRestarts(tmp_path / "unbounded.db", CONFIG) as log:
        largest, _ = _appends_with_a_live_subscriber(log)
    assert largest > CONFIG.wal_max_bytes


class NoBackgroundCheckpoints(SqliteLog):
    """Its background checkpoints do nothing: only the writer's own restarts bound the WAL."""

    def _checkpoint(self, conn: Any) -> bool:
        return True


def _appends_beside_a_busy_reader(log: SqliteLog) -> tuple[int, int, int]:
    """Append while a reader is inside a read transaction most of the time (2 ms in, a moment
    out); returns the largest WAL seen, the reader's transactions and the WAL restarts."""
    log.append_sync("s-0", [NewEvent(type="Filled", data={"n": -1})])
    stop = threading.Event()
    reads = 0

    def read_all_the_time() -> None:
        nonlocal reads
        conn = apsw.Connection(log.path, flags=apsw.SQLITE_OPEN_READONLY)
        try:
            while not stop.is_set():
                conn.execute("BEGIN")
                conn.execute("SELECT count(*) FROM events").fetchall()
                time.sleep(0.002)
                conn.execute("COMMIT")
                reads += 1
        finally:
            conn.close()

    reader = threading.Thread(target=read_all_the_time)
    reader.start()
    largest = 0
    try:
        for n in range(APPENDS):
            events = [NewEvent(type="Filled", data={"n": n, "pad": "x" * 1000})] * 10
            log.append_sync(f"s-{n % 7}", events)
            largest = max(largest, os.path.getsize(log.path + "-wal"))
    finally:
        stop.set()
        reader.join(10)
    return largest, reads, log.stats_sync().process["wal_restarts"]


def test_the_writer_restarts_the_wal_between_a_busy_readers_transactions(tmp_path: Path) -> None:
    """With no background checkpoints, only the writer's own restarts bound the WAL; a reader
    in a transaction at almost every moment makes most single tries fail."""
    with NoBackgroundCheckpoints(tmp_path / "busy-reader.db", CONFIG) as log:
        largest, reads, restarts = _appends_beside_a_busy_reader(log)
    assert reads >= 20, reads  # the reader really was reading all along
    assert largest <= CONFIG.wal_max_bytes, f"the WAL reached {largest} bytes"
    assert restarts >= 3, restarts


class TriesOnce(NoBackgroundCheckpoints):
    """Broken: the writer tries one restart before a batch (waiting 10 ms for readers, as each
    try does) and gives up if a reader is busy."""

    def _restart_before_batch(self, conn: Any) -> None:
        conn.set_busy_timeout(10)
        try:
            with contextlib.suppress(apsw.Error):
                if self._restart_wal(conn):
                    self._restart_due = False
        finally:
            conn.set_busy_timeout(int(self.config.lock_timeout * 1000))


def test_the_busy_reader_check_catches_a_writer_that_tries_once(tmp_path: Path) -> None:
    with TriesOnce(tmp_path / "tries-once.db", CONFIG) as log:
        largest, reads, _ = _appends_beside_a_busy_reader(log)
    assert reads >= 20, reads
    assert largest > CONFIG.wal_max_bytes, f"the WAL stayed at {largest} bytes"

"""The WAL stays bounded: background checkpoints copy it and restart it, even while a live
subscriber reads the log the whole time (its reads pin WAL frames while they run)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from facta.log import LogConfig, NewEvent, SqliteLog

KIB = 1024
CONFIG = LogConfig(wal_checkpoint_bytes=128 * KIB, wal_max_bytes=512 * KIB)
APPENDS = 300
EVENTS_PER_APPEND = 10  # ~10 KiB of data per append: ~3 MiB in all, six times the bound


class NeverRestarts(SqliteLog):
    """Broken: its background checkpoints do nothing, and its writer never restarts the WAL."""

    def _checkpoint(self, conn: Any) -> bool:
        return True

    def _restart_here(self, conn: Any) -> None:
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

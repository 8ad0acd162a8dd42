"""An async caller cancelled while its append waits: the append goes on, nothing reports it
failed, and its answer, success or error, is dropped without a "Future exception was never
retrieved" (asyncio logs that when a future's exception is garbage-collected unseen)."""

from __future__ import annotations

import asyncio
import gc
import logging
from pathlib import Path

import pytest

from facta.log import LogConfig, NewEvent, SqliteLog, WrongExpectedVersion


def ev() -> NewEvent:
    return NewEvent(type="Happened", data={"n": 1})


async def _wait_queued(log: SqliteLog, count: int) -> None:
    for _ in range(2000):
        if log.queued_appends() >= count:
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"expected {count} queued appends, found {log.queued_appends()}")


def _unretrieved(caplog: pytest.LogCaptureFixture) -> list[str]:
    gc.collect()  # asyncio logs an unseen exception when the future is collected
    return [r.getMessage() for r in caplog.records if "never retrieved" in r.getMessage()]


def test_a_cancelled_caller_does_not_undo_or_fail_its_committed_append(
    log: SqliteLog, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="asyncio")

    async def main() -> None:
        with log.hold_writer():
            doomed = asyncio.create_task(log.append("acc-1", [ev()], expect=0, key="k-1"))
            await _wait_queued(log, 1)
            doomed.cancel()
            with pytest.raises(asyncio.CancelledError):
                await doomed
        # The append was queued before the cancel: it commits, and a retry with the same key
        # gets its original result.
        retry = await log.append("acc-1", [ev()], expect=0, key="k-1")
        assert retry.replayed and retry.first_position == 1
        assert await log.stream_version("acc-1") == 1

    asyncio.run(main())
    assert _unretrieved(caplog) == []


@pytest.mark.parametrize("queue_limit", [10_000, 1], ids=["queued", "waiting-for-room"])
def test_a_cancelled_caller_whose_append_fails_leaves_no_unretrieved_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, queue_limit: int
) -> None:
    """With ``queue_limit=1`` the second append waits for room in a thread when it is
    cancelled; it is queued afterwards all the same, runs, and fails."""
    caplog.set_level(logging.ERROR, logger="asyncio")
    failures: list[BaseException] = []

    async def main(log: SqliteLog) -> None:
        with log.hold_writer():
            first = asyncio.create_task(log.append("acc-1", [ev()], expect=0))
            await _wait_queued(log, 1)
            doomed = asyncio.create_task(log.append("acc-1", [ev()], expect=0))
            await asyncio.sleep(0.05)  # inside append: queued, or waiting for room
            doomed.cancel()
            with pytest.raises(asyncio.CancelledError):
                await doomed
        await first
        # The doomed append still reaches the writer and fails there (its stream has moved):
        # a third append queued behind it proves it ran.
        third = await log.append("acc-2", [ev()], expect=0)
        assert third.first_position in (2, 3)
        try:
            await log.append("acc-1", [ev()], expect=0)
        except WrongExpectedVersion as exc:
            failures.append(exc)

    with SqliteLog(tmp_path / "log.db", LogConfig(queue_limit=queue_limit)) as log:
        asyncio.run(main(log))
        assert log.stats_sync().process["conflicts"] == 2, "the doomed append did not run"
    assert len(failures) == 1
    assert _unretrieved(caplog) == []

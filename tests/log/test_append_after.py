"""``after=``: an append decided on an earlier append of this process that is still in flight.

What a user relies on: the later append is written only if every append it names was written
before it (not refused, not replayed, not lost with a failed commit), and otherwise it is refused
with ``DependencyFailed`` and leaves nothing behind, not even its key.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from facta.log import (
    AppendTicket,
    CommitFailed,
    DependencyFailed,
    InvalidInput,
    NewEvent,
    SqliteLog,
    StreamAppend,
    WrongExpectedVersion,
)
from tests.log.contract.backends import FaultySqliteLog


def ev(n: int) -> NewEvent:
    return NewEvent(type="Moved", data={"n": n})


def entry(stream: str, n: int, expect: int) -> list[StreamAppend]:
    return [StreamAppend(stream, (ev(n),), expect)]


async def _queued_together(log: SqliteLog, *appends: dict[str, Any]) -> list[Any]:
    """Queue the appends in order while the writer is held, so they run in one batch."""
    with log.hold_writer():
        tasks = []
        for kwargs in appends:
            tasks.append(asyncio.ensure_future(log.append_many(**kwargs)))
            await asyncio.sleep(0)  # queued now, in this order
        assert log.queued_appends() == len(appends)
    return await asyncio.gather(*tasks, return_exceptions=True)


def test_an_append_after_a_written_one_is_written_in_the_same_batch(log: SqliteLog) -> None:
    async def main() -> None:
        first = AppendTicket()
        results = await _queued_together(
            log,
            {"entries": entry("a", 1, 0), "ticket": first},
            {"entries": entry("a", 2, 1), "after": [first], "key": "second"},
        )
        assert [r.first_position for r in results] == [1, 2]
        assert log.stats_sync().process["batches"] == 1

    asyncio.run(main())


def test_an_append_after_a_refused_one_is_refused_and_leaves_nothing(log: SqliteLog) -> None:
    log.append_sync("a", [ev(0)])

    async def main() -> None:
        first = AppendTicket()
        refused, dependent = await _queued_together(
            log,
            {"entries": entry("a", 1, 0), "ticket": first},  # wrong: "a" is at version 1
            # Its own expectation holds ("b" is empty): only the dependency refuses it.
            {"entries": entry("b", 2, 0), "after": [first], "key": "dependent"},
        )
        assert isinstance(refused, WrongExpectedVersion)
        assert isinstance(dependent, DependencyFailed)
        assert isinstance(dependent, WrongExpectedVersion)  # retried like any conflict
        assert "decided on an earlier append of this process that was not written" in str(dependent)
        assert (dependent.stream, dependent.expected, dependent.actual) == ("b", 0, 0)

    asyncio.run(main())
    assert log.head_sync() == 1 and log.stream_version_sync("b") == 0
    assert log.lookup_sync("dependent") is None


def test_an_append_after_a_replayed_one_is_refused(log: SqliteLog) -> None:
    log.append_many_sync(entry("a", 1, 0), key="k")

    async def main() -> None:
        first = AppendTicket()
        replayed = await log.append_many(entry("a", 1, 0), key="k", ticket=first)
        assert replayed.replayed
        with pytest.raises(DependencyFailed):
            await log.append_many(entry("a", 2, 1), after=[first])

    asyncio.run(main())
    assert log.head_sync() == 1


def test_an_append_after_one_from_an_earlier_committed_batch_is_written(log: SqliteLog) -> None:
    async def main() -> None:
        first, second = AppendTicket(), AppendTicket()
        await log.append_many(entry("a", 1, 0), ticket=first)
        await log.append_many(entry("b", 1, 0), ticket=second)
        result = await log.append_many(entry("a", 2, 1), after=[first, second])
        assert result.first_position == 3

    asyncio.run(main())


def test_an_append_after_one_whose_commit_failed_is_refused(tmp_path: Path) -> None:
    log = FaultySqliteLog(tmp_path / "faulty.db")
    with log:

        async def main() -> None:
            first = AppendTicket()
            log.fail_next_commit()
            with pytest.raises(CommitFailed):
                await log.append_many(entry("a", 1, 0), ticket=first)
            # Its own expectation holds now (nothing was written), the dependency does not.
            with pytest.raises(DependencyFailed):
                await log.append_many(entry("a", 2, 0), after=[first])
            assert (await log.append_many(entry("a", 3, 0))).first_position == 1

        asyncio.run(main())
        assert [e.data["n"] for e in log.read_stream_sync("a")] == [3]


def test_tickets_are_checked(log: SqliteLog) -> None:
    async def main() -> None:
        ticket = AppendTicket()
        await log.append_many(entry("a", 1, 0), ticket=ticket)
        with pytest.raises(ValueError, match="one append only"):
            await log.append_many(entry("a", 2, 1), ticket=ticket)
        with pytest.raises(InvalidInput, match="AppendTicket"):
            await log.append_many(entry("a", 2, 1), after=["not a ticket"])  # type: ignore[list-item]

    asyncio.run(main())
    assert log.head_sync() == 1

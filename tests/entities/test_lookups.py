from __future__ import annotations

import asyncio

from facta.entities.lookups import OutcomeLookups
from facta.log import LogClosed, NewEvent, SqliteLog


def _record(log: SqliteLog, key: str) -> None:
    log.append_sync("note-1", [NewEvent(type="Noted")], key=key, outcome={"n": key})


def test_lookups_asked_in_one_turn_share_one_read_and_get_their_own_answers(
    log: SqliteLog,
) -> None:
    for key in ("k-3", "k-7"):
        _record(log, key)

    async def main() -> None:
        lookups = OutcomeLookups(log)
        found = await asyncio.gather(*(lookups.lookup(f"k-{i}") for i in range(10)))
        assert [r is not None for r in found] == [i in (3, 7) for i in range(10)]
        assert found[3] is not None and found[3].outcome == {"n": "k-3"}
        assert found[3].result.first_position == 1 and found[3].recorded_at is not None
        assert found[7] is not None and found[7].key == "k-7"
        assert (lookups.asked, lookups.jobs) == (10, 1)
        # Asked in a later turn: a read of its own; the same id twice in one turn: both answered.
        assert await lookups.lookup("k-3") is not None
        twice = await asyncio.gather(lookups.lookup("k-7"), lookups.lookup("k-7"))
        assert [r is not None and r.key for r in twice] == ["k-7", "k-7"]
        assert lookups.jobs == 3

    asyncio.run(main())


def test_more_lookups_than_one_read_takes_are_all_answered(log: SqliteLog) -> None:
    _record(log, "k-300")

    async def main() -> None:
        lookups = OutcomeLookups(log)
        found = await asyncio.gather(*(lookups.lookup(f"k-{i}") for i in range(600)))
        assert [i for i, r in enumerate(found) if r is not None] == [300]
        assert lookups.jobs == 3  # 256 + 256 + 88

    asyncio.run(main())


def test_a_cancelled_lookup_leaves_the_others_answered(log: SqliteLog) -> None:
    _record(log, "kept")

    async def main() -> None:
        lookups = OutcomeLookups(log)
        gone = asyncio.ensure_future(lookups.lookup("gone"))
        kept = asyncio.ensure_future(lookups.lookup("kept"))
        await asyncio.sleep(0)
        gone.cancel()
        record = await kept
        assert record is not None and record.key == "kept"
        assert gone.cancelled()
        assert await lookups.lookup("other") is None  # and the next job still runs

    asyncio.run(main())


def test_a_failed_job_fails_every_lookup_it_held(log: SqliteLog) -> None:
    async def main() -> None:
        lookups = OutcomeLookups(log)
        log.close()
        results = await asyncio.gather(
            lookups.lookup("a"), lookups.lookup("b"), return_exceptions=True
        )
        assert all(isinstance(r, LogClosed) for r in results), results
        assert "closed" in str(results[0])

    asyncio.run(main())


def test_a_job_left_behind_by_a_closed_loop_does_not_block_the_next_loop(log: SqliteLog) -> None:
    _record(log, "b")
    lookups = OutcomeLookups(log)
    loop = asyncio.new_event_loop()
    pending = loop.create_task(lookups.lookup("a"))
    for _ in range(3):
        loop.run_until_complete(asyncio.sleep(0))  # the job is scheduled, maybe started
    pending.cancel()
    loop.close()

    async def next_loop() -> None:
        record = await asyncio.wait_for(lookups.lookup("b"), 5.0)
        assert record is not None and record.key == "b"

    asyncio.run(next_loop())

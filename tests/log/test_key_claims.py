"""An idempotency key is claimed by inserting it before the expectation is checked; these pin
what a user sees: a failed append leaves no key, and keys inside one batch see each other."""

from __future__ import annotations

import asyncio

import pytest

from facta.log import (
    AppendResult,
    IdempotencyKeyReused,
    NewEvent,
    SqliteLog,
    WrongExpectedVersion,
)


def ev(n: int = 1) -> NewEvent:
    return NewEvent(type="Deposited", data={"n": n})


def test_a_refused_append_leaves_no_key_and_the_key_works_later(log: SqliteLog) -> None:
    log.append_sync("acc-1", [ev()], expect=0)
    with pytest.raises(WrongExpectedVersion):
        log.append_sync("acc-1", [ev(2)], expect=0, key="deposit-2")
    assert log.lookup_sync("deposit-2") is None
    result = log.append_sync("acc-1", [ev(2)], expect=1, key="deposit-2")
    assert (result.first_position, result.replayed) == (2, False)
    assert log.lookup_sync("deposit-2") is not None
    assert log.stats_sync().outcomes == 1


def test_a_key_reused_for_another_request_is_refused_and_writes_nothing(log: SqliteLog) -> None:
    log.append_sync("acc-1", [ev()], key="k")
    with pytest.raises(IdempotencyKeyReused):
        log.append_sync("acc-1", [ev(99)], key="k")
    assert [e.data["n"] for e in log.read_stream_sync("acc-1")] == [1]


def test_same_key_twice_in_one_batch_replays_the_first(log: SqliteLog) -> None:
    async def both() -> tuple[AppendResult | BaseException, ...]:
        with log.hold_writer():
            first = asyncio.ensure_future(log.append("acc-1", [ev()], expect=0, key="k"))
            second = asyncio.ensure_future(log.append("acc-1", [ev()], expect=0, key="k"))
            wrong = asyncio.ensure_future(log.append("acc-1", [ev(3)], expect=0, key="k3"))
            while log.queued_appends() < 3:
                await asyncio.sleep(0.001)
        return await asyncio.gather(first, second, wrong, return_exceptions=True)

    first, second, wrong = asyncio.run(both())
    assert isinstance(first, AppendResult) and isinstance(second, AppendResult)
    assert (first.first_position, first.replayed) == (1, False)
    assert (second.first_position, second.replayed) == (1, True)
    # The third saw version 1 (written by the first in the same batch) and left no key.
    assert isinstance(wrong, WrongExpectedVersion) and wrong.actual == 1
    assert log.lookup_sync("k3") is None
    assert log.head_sync() == 1

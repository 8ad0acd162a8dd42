from __future__ import annotations

import asyncio

import pytest

from facta.log import (
    Expect,
    IdempotencyKeyReused,
    InvalidInput,
    NewEvent,
    SqliteLog,
    StreamAppend,
    WrongExpectedVersion,
)


def ev(kind: str = "Happened", **data: object) -> NewEvent:
    return NewEvent(type=kind, data=dict(data))


def test_append_then_read_stream(log: SqliteLog) -> None:
    first = log.append_sync("acc-1", [ev(n=1), ev(n=2)], expect=Expect.NO_STREAM)
    assert (first.first_position, first.last_position) == (1, 2)
    assert first.version_of("acc-1") == 2
    events = log.read_stream_sync("acc-1")
    assert [e.version for e in events] == [1, 2]
    assert [e.data["n"] for e in events] == [1, 2]
    assert [e.data["n"] for e in log.read_stream_sync("acc-1", from_version=2, backward=True)] == [
        2,
        1,
    ]


def test_wrong_expected_version_names_stream_expected_and_actual(log: SqliteLog) -> None:
    log.append_sync("acc-1", [ev()])
    with pytest.raises(WrongExpectedVersion) as caught:
        log.append_sync("acc-1", [ev()], expect=5)
    assert (caught.value.stream, caught.value.expected, caught.value.actual) == ("acc-1", 5, 1)
    assert "acc-1" in str(caught.value) and "5" in str(caught.value)
    assert log.head_sync() == 1


def test_idempotency_key_returns_original_result_even_after_stream_moved(log: SqliteLog) -> None:
    original = log.append_sync("s", [ev(a=1)], expect=0, key="k")
    log.append_sync("s", [ev(a=2)])
    again = log.append_sync("s", [ev(a=1)], expect=0, key="k")
    assert again.replayed and again.first_position == original.first_position
    assert log.head_sync() == 2
    with pytest.raises(IdempotencyKeyReused):
        log.append_sync("s", [ev(a=99)], expect=0, key="k")


def test_read_check_entry_fails_when_stream_moved(log: SqliteLog) -> None:
    log.append_sync("a", [ev()])
    log.append_sync("b", [ev()])
    ok = log.append_many_sync([StreamAppend("a", (ev(),), 1), StreamAppend("b", (), 1)])
    assert ok.last_position == 3
    log.append_sync("b", [ev()])
    with pytest.raises(WrongExpectedVersion):
        log.append_many_sync([StreamAppend("a", (ev(),), 2), StreamAppend("b", (), 1)])
    assert log.head_sync() == 4  # nothing of the failed append was written


def test_outcome_without_events_is_recorded(log: SqliteLog) -> None:
    result = log.append_many_sync([], key="cmd-1", outcome={"refused": "overdraft"})
    assert result.first_position is None
    record = log.lookup_sync("cmd-1")
    assert record is not None and record.outcome == {"refused": "overdraft"}
    assert log.lookup_sync("cmd-2") is None


@pytest.mark.parametrize(
    ("stream", "event", "expect"),
    [
        ("$system", ev(), Expect.ANY),
        ("", ev(), Expect.ANY),
        ("ok", NewEvent(type="T", data=[1, 2]), Expect.ANY),  # type: ignore[arg-type]
        ("ok", NewEvent(type="T", data={"x": float("nan")}), Expect.ANY),
        ("ok", NewEvent(type="T", data={"x": "y" * (1024 * 1024 + 1)}), Expect.ANY),
        ("ok", ev(), "sometimes"),
    ],
)
def test_bad_input_is_refused_and_nothing_written(
    log: SqliteLog, stream: str, event: NewEvent, expect: object
) -> None:
    with pytest.raises(InvalidInput):
        log.append_sync(stream, [event], expect=expect)  # type: ignore[arg-type]
    assert log.head_sync() == 0


def test_concurrent_async_appends_get_gap_free_positions(log: SqliteLog) -> None:
    async def main() -> list[int]:
        results = await asyncio.gather(*(log.append(f"s-{i % 7}", [ev(i=i)]) for i in range(300)))
        return sorted(r.first_position or 0 for r in results)

    assert asyncio.run(main()) == list(range(1, 301))
    assert [e.position for e in log.read_all_sync(limit=1000)] == list(range(1, 301))


def test_subscription_catches_up_then_goes_live(log: SqliteLog) -> None:
    for i in range(25):
        log.append_sync("s", [ev(i=i)])

    async def main() -> list[int]:
        seen: list[int] = []

        async def writer() -> None:
            for i in range(25, 50):
                await log.append("s", [ev(i=i)])
                await asyncio.sleep(0.001)

        task = asyncio.create_task(writer())
        async for event in log.subscribe(after=0, page_size=10):
            seen.append(event.position)
            if len(seen) == 50:
                break
        await task
        return seen

    assert asyncio.run(main()) == list(range(1, 51))

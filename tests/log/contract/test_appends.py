"""Appends: expectations, multi-stream atomicity, read checks, idempotency keys, outcomes, ids."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from facta.log import (
    DuplicateEventId,
    Expect,
    Expectation,
    IdempotencyKeyReused,
    InvalidInput,
    NewEvent,
    StreamAppend,
    WrongExpectedVersion,
)

from .backends import ContractLog
from .conftest import OpenLog


def ev(kind: str = "Happened", **data: object) -> NewEvent:
    return NewEvent(type=kind, data=dict(data))


def fill(log: ContractLog, stream: str, count: int) -> None:
    for i in range(count):
        log.append_sync(stream, [ev(i=i)])


# (events already in the stream, expectation, version it fails with or None when it holds)
EXPECTATIONS: list[tuple[int, Expectation, int | None]] = [
    (0, Expect.NO_STREAM, None),
    (2, Expect.NO_STREAM, 2),
    (0, Expect.STREAM_EXISTS, 0),
    (3, Expect.STREAM_EXISTS, None),
    (0, Expect.ANY, None),
    (4, Expect.ANY, None),
    (0, 0, None),
    (2, 2, None),
    (2, 0, 2),
    (2, 1, 2),
    (2, 3, 2),
    (0, 1, 0),
]


@pytest.mark.parametrize(("existing", "expect", "fails_with"), EXPECTATIONS)
def test_every_expectation_kind_holds_or_fails_naming_stream_expected_and_actual(
    log: ContractLog, existing: int, expect: Expectation, fails_with: int | None
) -> None:
    fill(log, "acct-1", existing)
    fill(log, "other", 1)
    head = log.head_sync()
    if fails_with is None:
        result = log.append_sync("acct-1", [ev(n=1), ev(n=2)], expect=expect)
        assert result.version_of("acct-1") == existing + 2
        assert (result.first_position, result.last_position) == (head + 1, head + 2)
        assert [e.version for e in log.read_stream_sync("acct-1")][-2:] == [
            existing + 1,
            existing + 2,
        ]
        return
    with pytest.raises(WrongExpectedVersion) as caught:
        log.append_sync("acct-1", [ev(n=1)], expect=expect)
    error = caught.value
    assert (error.stream, error.expected, error.actual) == ("acct-1", expect, fails_with)
    message = str(error)
    assert "acct-1" in message and (f"version {fails_with}" in message or fails_with == 0)
    assert str(expect) in message if isinstance(expect, int) else "expected" in message
    assert log.head_sync() == head, "a failed expectation wrote events"
    assert log.stream_version_sync("acct-1") == existing


def test_multi_stream_append_is_all_or_nothing(log: ContractLog) -> None:
    fill(log, "a", 1)
    fill(log, "b", 2)
    with pytest.raises(WrongExpectedVersion) as caught:
        log.append_many_sync(
            [
                StreamAppend("a", (ev(x=1),), 1),
                StreamAppend("c", (ev(x=2), ev(x=3)), Expect.NO_STREAM),
                StreamAppend("b", (ev(x=4),), 1),
            ]
        )
    assert (caught.value.stream, caught.value.expected, caught.value.actual) == ("b", 1, 2)
    assert log.head_sync() == 3
    assert log.stream_version_sync("a") == 1 and log.stream_version_sync("c") == 0

    result = log.append_many_sync(
        [
            StreamAppend("a", (ev(x=1),), 1),
            StreamAppend("c", (ev(x=2), ev(x=3)), Expect.NO_STREAM),
            StreamAppend("b", (ev(x=4),), 2),
        ]
    )
    assert (result.first_position, result.last_position) == (4, 7)
    assert [(w.stream, w.version, w.first_position, w.last_position) for w in result.streams] == [
        ("a", 2, 4, 4),
        ("c", 2, 5, 6),
        ("b", 3, 7, 7),
    ]
    written = log.read_all_sync(after=3)
    assert [(e.position, e.stream, e.version, e.data["x"]) for e in written] == [
        (4, "a", 2, 1),
        (5, "c", 1, 2),
        (6, "c", 2, 3),
        (7, "b", 3, 4),
    ]


def test_zero_event_entry_is_a_read_check(log: ContractLog) -> None:
    fill(log, "read", 2)
    ok = log.append_many_sync([StreamAppend("write", (ev(),), 0), StreamAppend("read", (), 2)])
    assert ok.version_of("read") == 2 and ok.version_of("write") == 1
    assert log.stream_version_sync("read") == 2, "a read check wrote events"
    only_check = log.append_many_sync([StreamAppend("read", (), 2)])
    assert (only_check.first_position, only_check.last_position) == (None, None)

    fill(log, "read", 1)  # the stream moves after it was read
    with pytest.raises(WrongExpectedVersion) as caught:
        log.append_many_sync([StreamAppend("write", (ev(),), 1), StreamAppend("read", (), 2)])
    assert (caught.value.stream, caught.value.expected, caught.value.actual) == ("read", 2, 3)
    assert log.stream_version_sync("write") == 1
    with pytest.raises(InvalidInput, match="read check"):
        log.append_many_sync([StreamAppend("read", (), Expect.ANY)])


def test_same_key_same_request_returns_the_original_result_and_writes_nothing(
    log: ContractLog,
) -> None:
    original = log.append_sync("s", [ev(a=1, b=2)], expect=0, key="cmd-1")
    assert not original.replayed and original.key == "cmd-1"
    fill(log, "s", 2)  # the stream moves on: the retry's expectation no longer holds
    head = log.head_sync()
    again = log.append_sync(
        "s", [NewEvent(type="Happened", data={"b": 2, "a": 1})], key="cmd-1", expect=0
    )
    assert again.replayed
    assert (again.first_position, again.last_position, again.streams) == (
        original.first_position,
        original.last_position,
        original.streams,
    )
    assert log.head_sync() == head, "a replayed append wrote events"


@pytest.mark.parametrize(
    "change",
    ["data", "type", "expectation", "stream", "metadata", "outcome", "event count"],
)
def test_same_key_different_request_is_refused_and_writes_nothing(
    log: ContractLog, change: str
) -> None:
    log.append_sync("s", [ev(a=1)], expect=0, key="cmd-1", outcome={"ok": True})
    stream, events, expect, outcome = "s", [ev(a=1)], 0, {"ok": True}
    if change == "data":
        events = [ev(a=2)]
    elif change == "type":
        events = [ev("Other", a=1)]
    elif change == "expectation":
        expect = 1
    elif change == "stream":
        stream = "t"
    elif change == "metadata":
        events = [NewEvent(type="Happened", data={"a": 1}, metadata={"by": "x"})]
    elif change == "outcome":
        outcome = {"ok": False}
    else:
        events = [ev(a=1), ev(a=1)]
    with pytest.raises(IdempotencyKeyReused) as caught:
        log.append_sync(stream, events, expect=expect, key="cmd-1", outcome=outcome)
    assert caught.value.key == "cmd-1" and "cmd-1" in str(caught.value)
    assert log.head_sync() == 1


def test_a_failed_append_records_no_key(log: ContractLog) -> None:
    fill(log, "s", 1)
    with pytest.raises(WrongExpectedVersion):
        log.append_sync("s", [ev(a=1)], expect=0, key="cmd-1", outcome={"n": 1})
    assert log.lookup_sync("cmd-1") is None
    # The key is still free: the same key with the right expectation succeeds, once.
    done = log.append_sync("s", [ev(a=1)], expect=1, key="cmd-1", outcome={"n": 1})
    assert not done.replayed and done.first_position == 2


def test_generated_ids_are_not_part_of_the_request_but_given_ids_are(log: ContractLog) -> None:
    log.append_sync("s", [ev(a=1)], key="gen")
    assert log.append_sync("s", [ev(a=1)], key="gen").replayed
    given = uuid.UUID("0190f0f0-0000-7000-8000-000000000001")
    log.append_sync("t", [NewEvent(type="T", id=given)], key="given")
    assert log.append_sync("t", [NewEvent(type="T", id=given)], key="given").replayed
    with pytest.raises(IdempotencyKeyReused):
        log.append_sync("t", [NewEvent(type="T", id=uuid.uuid4())], key="given")
    assert log.head_sync() == 2


def test_outcome_records_are_written_with_the_append_and_looked_up(log: ContractLog) -> None:
    deposit = log.append_sync("acct", [ev(amount=5)], key="deposit-1", outcome={"balance": 5})
    refused = log.append_many_sync([], key="withdraw-9", outcome={"refused": "overdraft"})
    assert (refused.first_position, refused.last_position, refused.streams) == (None, None, ())
    assert log.head_sync() == 1

    record = log.lookup_sync("deposit-1")
    assert record is not None
    assert record.key == "deposit-1" and record.outcome == {"balance": 5}
    assert record.result.first_position == deposit.first_position
    assert record.result.version_of("acct") == 1
    assert record.recorded_at.tzinfo is not None
    refused_record = log.lookup_sync("withdraw-9")
    assert refused_record is not None and refused_record.outcome == {"refused": "overdraft"}
    assert log.lookup_sync("never-used") is None
    keys = ["withdraw-9", "never-used", "deposit-1", "withdraw-9"]
    assert log.lookup_many_sync(keys) == [log.lookup_sync(k) for k in keys]
    assert log.lookup_many_sync([]) == []

    replay = log.append_many_sync([], key="withdraw-9", outcome={"refused": "overdraft"})
    assert replay.replayed and replay.outcome == {"refused": "overdraft"}
    with pytest.raises(InvalidInput, match="key"):
        log.append_sync("acct", [ev()], outcome={"orphan": True})


def test_caller_supplied_ids_are_kept_and_duplicates_refused(log: ContractLog) -> None:
    first, second = uuid.uuid4(), uuid.uuid4()
    log.append_sync("s", [NewEvent(type="T", id=first), NewEvent(type="T", id=second)])
    assert [e.id for e in log.read_stream_sync("s")] == [first, second]
    with pytest.raises(DuplicateEventId) as caught:
        log.append_sync(
            "other", [NewEvent(type="T", id=uuid.uuid4()), NewEvent(type="T", id=first)]
        )
    assert caught.value.event_id == str(first)
    repeated = uuid.uuid4()
    with pytest.raises(DuplicateEventId):
        log.append_sync("other", [NewEvent(type="T", id=repeated), NewEvent(type="T", id=repeated)])
    assert log.head_sync() == 2 and log.stream_version_sync("other") == 0


class FixedClock:
    def __init__(self) -> None:
        self.moment = datetime(2031, 4, 5, 6, 7, 8, 123456, tzinfo=UTC)

    def now(self) -> datetime:
        return self.moment


def test_events_get_uuid7_ids_clock_times_and_reserved_metadata(open_log: OpenLog) -> None:
    clock = FixedClock()
    log = open_log(clock=clock)
    meta = {"causation_id": "cmd-1", "correlation_id": "flow-7", "user": "ada"}
    log.append_sync("s", [NewEvent(type="T", data={"n": 1}, metadata=meta)])
    clock.moment += timedelta(microseconds=1)
    log.append_sync("s", [ev()])
    first, second = log.read_stream_sync("s")
    assert first.id.version == 7 and second.id.version == 7 and first.id != second.id
    assert first.recorded_at == datetime(2031, 4, 5, 6, 7, 8, 123456, tzinfo=UTC)
    assert second.recorded_at - first.recorded_at == timedelta(microseconds=1)
    assert (first.causation_id, first.correlation_id) == ("cmd-1", "flow-7")
    assert first.metadata == meta and first.schema_version == 1


def test_events_and_keys_outlive_the_process_that_wrote_them(open_log: OpenLog) -> None:
    first = open_log(name="kept")
    original = first.append_sync("s", [ev(a=1)], expect=0, key="cmd-1", outcome={"n": 1})
    first.close()
    reopened = open_log(name="kept")
    assert [e.data for e in reopened.read_stream_sync("s")] == [{"a": 1}]
    again = reopened.append_sync("s", [ev(a=1)], expect=0, key="cmd-1", outcome={"n": 1})
    assert again.replayed and again.first_position == original.first_position
    nxt = reopened.append_sync("s", [ev(a=2)], expect=1)
    assert nxt.first_position == 2, "a position was reused or skipped after reopening"

"""One group-commit batch behaves exactly like its appends run one after another, in
submission order; and a failed COMMIT fails every append of the batch."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from facta.log import (
    AppendResult,
    CommitFailed,
    DuplicateEventId,
    Expect,
    Expectation,
    FactaError,
    IdempotencyKeyReused,
    LogConfig,
    NewEvent,
    StreamAppend,
    WrongExpectedVersion,
)

from .backends import POISON, Backend, ContractLog, Opener

IDS = (
    uuid.UUID(int=0x0190F0F0_0000_7000_8000_000000000001),
    uuid.UUID(int=0x0190F0F0_0000_7000_8000_000000000002),
)


@dataclass(frozen=True)
class Op:
    entries: tuple[StreamAppend, ...]
    key: str | None
    outcome: Any


Answer = AppendResult | tuple[str, str]


async def submit_held(log: ContractLog, ops: list[Op]) -> list[Answer]:
    """Queue every op behind the held writer, in order, then let one batch run them."""
    tasks: list[asyncio.Task[AppendResult]] = []
    with log.hold_writer():
        for op in ops:
            tasks.append(
                asyncio.create_task(log.append_many(op.entries, key=op.key, outcome=op.outcome))
            )
            deadline = time.monotonic() + 5
            while log.queued_appends() < len(tasks) and time.monotonic() < deadline:
                await asyncio.sleep(0.0005)
        assert log.queued_appends() == len(ops), "appends did not queue behind the writer"
    answers = await asyncio.gather(*tasks, return_exceptions=True)
    return [_answer(a) for a in answers]


async def submit_one_by_one(log: ContractLog, ops: list[Op]) -> list[Answer]:
    answers: list[Answer] = []
    for op in ops:
        try:
            answers.append(await log.append_many(op.entries, key=op.key, outcome=op.outcome))
        except Exception as exc:
            answers.append(_answer(exc))
    return answers


def _answer(value: AppendResult | BaseException) -> Answer:
    if isinstance(value, BaseException):
        return (type(value).__name__, str(value))
    return value


def log_rows(log: ContractLog) -> list[tuple[Any, ...]]:
    return [
        (e.position, e.stream, e.version, e.type, e.data, e.metadata, e.id if e.id in IDS else None)
        for e in log.read_all_sync(limit=10_000)
    ]


def batches_run(log: ContractLog) -> int:
    return int(asyncio.run(log.stats()).process["batches"])


EXPECTS = st.one_of(
    st.integers(0, 3), st.sampled_from([Expect.ANY, Expect.NO_STREAM, Expect.STREAM_EXISTS])
)


@st.composite
def ops(draw: st.DrawFn) -> Op:
    chosen = draw(st.lists(st.sampled_from(["s0", "s1"]), min_size=0, max_size=2, unique=True))
    key = draw(st.sampled_from([None, "k0", "k1"]))
    entries = []
    for stream in chosen:
        count = draw(st.integers(0, 2))
        expect: Expectation = draw(EXPECTS if count else st.integers(0, 3))
        events = tuple(
            NewEvent(
                type="T",
                data={"v": draw(st.integers(1, 2))},
                id=draw(st.sampled_from([None, None, None, *IDS])),
            )
            for _ in range(count)
        )
        entries.append(StreamAppend(stream, events, expect))
    if not entries and key is None:
        entries.append(StreamAppend("s0", (NewEvent(type="T"),), Expect.ANY))
    outcome = draw(st.sampled_from([None, {"r": 1}, {"r": 2}])) if key else None
    return Op(tuple(entries), key, outcome)


_examples = itertools.count()


class BatchMismatch(AssertionError):
    """A batch answered or wrote differently from its appends run one after another."""


def compare_batch(
    batched: ContractLog, sequential: ContractLog, batch: list[Op], seeded: int
) -> None:
    for log in (batched, sequential):
        for i in range(seeded):
            log.append_sync("s0", [NewEvent(type="Seed", data={"i": i})])
    before = batches_run(batched)
    held = asyncio.run(submit_held(batched, batch))
    assert batches_run(batched) == before + 1, "the appends did not run as one batch"
    one_by_one = asyncio.run(submit_one_by_one(sequential, batch))
    for index, (a, b) in enumerate(zip(held, one_by_one, strict=True)):
        if a != b:
            raise BatchMismatch(f"append {index} of the batch: {a!r}; run one by one: {b!r}")
    if log_rows(batched) != log_rows(sequential):
        raise BatchMismatch("the batch wrote other events than its appends run one by one")
    for key in ("k0", "k1"):
        mine, theirs = batched.lookup_sync(key), sequential.lookup_sync(key)
        if (mine and (mine.result, mine.outcome)) != (theirs and (theirs.result, theirs.outcome)):
            raise BatchMismatch(f"key {key}: batch recorded {mine}, one by one {theirs}")


def run_batch_property(
    backend: Backend, open_batched: Opener, directory: Path, examples: int, stop_first: bool
) -> tuple[int, int, list[BaseException]]:
    """Compare ``examples`` random batches with their sequential runs; return how many ran,
    how many had a same-stream or same-key collision, and the failures."""
    ran = 0
    collisions = 0
    failures: list[BaseException] = []

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        report_multiple_bugs=False,
        phases=(Phase.generate,) if stop_first else tuple(Phase),
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(st.lists(ops(), min_size=2, max_size=7), st.integers(0, 2))
    def batch_equals_sequence(batch: list[Op], seeded: int) -> None:
        nonlocal ran, collisions
        ran += 1
        n = next(_examples)
        batched = open_batched(directory / f"batched-{n}.db", None, None)
        sequential = backend.open(directory / f"sequential-{n}.db", None, None)
        try:
            compare_batch(batched, sequential, batch, seeded)
        except BaseException as exc:
            failures.append(exc)
            raise
        finally:
            batched.close()
            sequential.close()
        streams = [e.stream for op in batch for e in op.entries]
        keys = [op.key for op in batch if op.key]
        if len(streams) != len(set(streams)) or len(keys) != len(set(keys)):
            collisions += 1

    try:
        batch_equals_sequence()
    except BaseException as exc:
        if not failures:
            failures.append(exc)
    return ran, collisions, failures


def test_a_batch_is_identical_to_its_appends_run_in_submission_order(
    backend: Backend, tmp_path: Path
) -> None:
    ran, collisions, failures = run_batch_property(backend, backend.open, tmp_path, 60, False)
    assert not failures, f"a batch differed from its sequential run: {failures[0]!r}"
    assert ran >= 60 and collisions >= 30, (ran, collisions)


def test_negative_control_a_batch_blind_to_its_own_appends_is_caught(
    backend: Backend, tmp_path: Path
) -> None:
    ran, _, failures = run_batch_property(backend, backend.open_stale_batch, tmp_path, 60, True)
    assert failures, f"a batch blind to its earlier appends passed {ran} examples"
    assert isinstance(failures[0], BatchMismatch), f"it failed by crashing: {failures[0]!r}"


def ev(n: int) -> NewEvent:
    return NewEvent(type="T", data={"n": n})


def test_one_failing_append_never_fails_its_neighbours(log: ContractLog) -> None:
    log.append_sync("other", [NewEvent(type="T", id=IDS[0])])
    batch = [
        Op((StreamAppend("s", (ev(1),), Expect.NO_STREAM),), "k1", {"ok": 1}),
        Op((StreamAppend("s", (ev(2),), Expect.NO_STREAM),), None, None),  # sees the first
        Op((StreamAppend("s", (ev(3),), 1),), None, None),
        Op((StreamAppend("s", (ev(1),), Expect.NO_STREAM),), "k1", {"ok": 1}),  # a retry
        Op((StreamAppend("s", (ev(9),), 2),), "k1", None),  # the key, another request
        Op((StreamAppend("t", (NewEvent(type="T", id=IDS[0]),), 0),), None, None),
        Op((StreamAppend("t", (ev(4),), 0), StreamAppend("s", (), 1)), None, None),  # s moved
        Op((StreamAppend("t", (ev(5),), 0), StreamAppend("s", (), 2)), "k2", None),
    ]
    before = batches_run(log)
    answers = asyncio.run(submit_held(log, batch))
    assert batches_run(log) == before + 1
    first, conflict, third, retry, reused, duplicate, stale_read, read_ok = answers
    assert isinstance(first, AppendResult) and first.first_position == 2
    assert isinstance(conflict, tuple) and conflict[0] == WrongExpectedVersion.__name__
    assert "found version 1" in conflict[1]
    assert isinstance(third, AppendResult) and third.version_of("s") == 2
    assert isinstance(retry, AppendResult) and retry.replayed
    assert retry.first_position == first.first_position and retry.outcome == {"ok": 1}
    assert isinstance(reused, tuple) and reused[0] == IdempotencyKeyReused.__name__
    assert isinstance(duplicate, tuple) and duplicate[0] == DuplicateEventId.__name__
    assert isinstance(stale_read, tuple) and stale_read[0] == WrongExpectedVersion.__name__
    assert "'s'" in stale_read[1]
    assert isinstance(read_ok, AppendResult) and read_ok.first_position == 4
    assert [(e.stream, e.version, e.data) for e in log.read_all_sync(after=1)] == [
        ("s", 1, {"n": 1}),
        ("s", 2, {"n": 3}),
        ("t", 1, {"n": 5}),
    ]


def test_a_failed_commit_fails_every_append_of_the_batch(backend: Backend, tmp_path: Path) -> None:
    log = backend.open_faulty(tmp_path / "doomed.db", None)
    try:
        log.append_sync("s", [ev(0)])
        batch = [
            Op((StreamAppend("s", (ev(1),), 1),), "k1", {"r": 1}),
            Op((StreamAppend("t", (ev(2),), Expect.NO_STREAM),), "k2", None),
            Op((StreamAppend("s", (ev(3),), 0),), None, None),  # would have failed anyway
            Op((StreamAppend("u", (ev(4), ev(5)), Expect.ANY),), None, None),
        ]
        log.fail_next_commit()
        answers = asyncio.run(submit_held(log, batch))
        assert [a[0] for a in answers if isinstance(a, tuple)] == [CommitFailed.__name__] * 4, (
            f"some appends of the failed batch did not get the COMMIT error: {answers}"
        )
        assert all(log.path in a[1] for a in answers if isinstance(a, tuple))
        assert log.head_sync() == 1, "the failed batch left events"
        assert log.lookup_sync("k1") is None and log.lookup_sync("k2") is None

        log.fail_next_commit()
        with pytest.raises(CommitFailed) as caught:
            log.append_sync("s", [ev(6)], key="k3")
        assert caught.value.__cause__ is not None, "the COMMIT error is not chained"

        # The log goes on, and the keys of the failed batch are still free.
        again = log.append_sync("s", [ev(1)], expect=1, key="k1", outcome={"r": 1})
        assert not again.replayed and again.first_position == 2
        assert [e.data["n"] for e in log.read_all_sync()] == [0, 1]
    finally:
        log.close()


def test_a_storage_error_in_one_append_fails_only_that_append(
    backend: Backend, tmp_path: Path
) -> None:
    log = backend.open_faulty(tmp_path / "poisoned.db", LogConfig(append_timeout=5.0))
    try:
        batch = [
            Op((StreamAppend("s", (ev(1),), Expect.NO_STREAM),), "k1", None),
            Op((StreamAppend("s", (ev(2), NewEvent(type=POISON)), 1),), "k2", None),
            Op((StreamAppend("s", (ev(3),), 1),), "k3", None),
            Op((StreamAppend("t", (NewEvent(type=POISON),), Expect.ANY),), None, None),
            Op((StreamAppend("t", (ev(4),), Expect.NO_STREAM),), None, None),
        ]
        answers = asyncio.run(submit_held(log, batch))
        first, poisoned, third, poisoned_too, fifth = answers
        assert isinstance(poisoned, tuple) and isinstance(poisoned_too, tuple), answers
        for failure in (poisoned, poisoned_too):
            assert failure[0] in {c.__name__ for c in _subclasses(FactaError)}, failure
            assert "poisoned" in failure[1], failure
        assert isinstance(first, AppendResult) and first.first_position == 1
        assert isinstance(third, AppendResult) and third.version_of("s") == 2, answers
        assert isinstance(fifth, AppendResult) and fifth.version_of("t") == 1, answers
        assert [(e.stream, e.version, e.data) for e in log.read_all_sync()] == [
            ("s", 1, {"n": 1}),
            ("s", 2, {"n": 3}),
            ("t", 1, {"n": 4}),
        ]
        assert log.lookup_sync("k2") is None and log.lookup_sync("k3") is not None
    finally:
        log.close()


def _subclasses(cls: type[BaseException]) -> list[type[BaseException]]:
    found = [cls]
    for sub in cls.__subclasses__():
        found.extend(_subclasses(sub))
    return found

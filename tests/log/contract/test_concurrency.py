"""Concurrent appends racing on one expectation: at most one wins, and every answer is one a
sequential log could have given (checked by ``history.check_history``)."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from facta.log import AppendResult, Expect, Expectation, NewEvent, StreamAppend

from .backends import Backend, ContractLog
from .history import Attempt, HistoryViolation, check_history


@dataclass(frozen=True)
class Scenario:
    seed: tuple[int, ...]  # events already in streams 0..n-1
    contenders: int  # appends to stream 0 with the same exact expectation
    offset: int  # the contested expectation is seed[0] + offset (0: the right version)
    extras: tuple[tuple[tuple[int, Expectation, int], ...], ...]  # (stream, expect, events)
    order: tuple[int, ...]  # submission order of contenders + extras
    mode: str  # "held": queued behind hold_writer(); "gather": asyncio; "threads": a barrier


EXPECTS = st.one_of(
    st.integers(0, 4),
    st.sampled_from([Expect.ANY, Expect.NO_STREAM, Expect.STREAM_EXISTS]),
)


@st.composite
def entries(draw: st.DrawFn, streams: int) -> tuple[tuple[int, Expectation, int], ...]:
    chosen = draw(st.lists(st.integers(0, streams - 1), min_size=1, max_size=2, unique=True))
    out = []
    for position, stream in enumerate(chosen):
        count = draw(st.integers(1 if position == 0 else 0, 2))
        expect = draw(EXPECTS if count else st.integers(0, 4))  # a read check needs a version
        out.append((stream, expect, count))
    return tuple(out)


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    streams = draw(st.integers(1, 3))
    seed = tuple(draw(st.lists(st.integers(0, 3), min_size=streams, max_size=streams)))
    contenders = draw(st.integers(2, 4))
    offset = draw(st.sampled_from([0, 0, 0, 1, -1]))
    extras = tuple(draw(st.lists(entries(streams), max_size=4)))
    order = tuple(draw(st.permutations(range(contenders + len(extras)))))
    mode = draw(st.sampled_from(["held", "gather", "threads"]))
    return Scenario(seed, contenders, offset, extras, order, mode)


_examples = itertools.count(1)


def build(scenario: Scenario, prefix: str) -> tuple[list[tuple[StreamAppend, ...]], set[int]]:
    """The appends of a scenario in submission order, and which of them are contenders."""
    contested = max(0, scenario.seed[0] + scenario.offset)
    appends: list[tuple[StreamAppend, ...]] = []
    for n in range(scenario.contenders):
        event = NewEvent(type="Contended", data={"who": n})
        appends.append((StreamAppend(f"{prefix}-0", (event,), contested),))
    for n, extra in enumerate(scenario.extras):
        appends.append(
            tuple(
                StreamAppend(
                    f"{prefix}-{stream}",
                    tuple(NewEvent(type="Extra", data={"op": n, "i": i}) for i in range(count)),
                    expect,
                )
                for stream, expect, count in extra
            )
        )
    ordered = [appends[i] for i in scenario.order]
    contenders = {k for k, i in enumerate(scenario.order) if i < scenario.contenders}
    return ordered, contenders


async def _attempt_async(
    log: ContractLog, entries: tuple[StreamAppend, ...], contested: bool, head_before: int
) -> Attempt:
    try:
        result, error = await log.append_many(entries), None
    except Exception as exc:
        result, error = None, exc
    return Attempt(entries, contested, head_before, await log.head(), result, error)


def _attempt_sync(
    log: ContractLog, entries: tuple[StreamAppend, ...], contested: bool, start: threading.Barrier
) -> Attempt:
    head_before = log.head_sync()
    start.wait(5)
    try:
        result, error = log.append_many_sync(entries), None
    except Exception as exc:
        result, error = None, exc
    return Attempt(entries, contested, head_before, log.head_sync(), result, error)


async def _race_async(
    log: ContractLog, appends: list[tuple[StreamAppend, ...]], contenders: set[int], held: bool
) -> list[Attempt]:
    head_before = await log.head()
    if not held:
        return list(
            await asyncio.gather(
                *(
                    _attempt_async(log, e, k in contenders, head_before)
                    for k, e in enumerate(appends)
                )
            )
        )
    with log.hold_writer():
        tasks = []
        for k, e in enumerate(appends):
            tasks.append(asyncio.create_task(_attempt_async(log, e, k in contenders, head_before)))
            # Wait until it is queued, so every append is in flight before any is applied.
            deadline = time.monotonic() + 5
            while log.queued_appends() < k + 1 and time.monotonic() < deadline:
                await asyncio.sleep(0.0005)
        queued = log.queued_appends()
    assert queued == len(appends), f"{queued} of {len(appends)} appends queued behind the writer"
    return list(await asyncio.gather(*tasks))


def race(log: ContractLog, scenario: Scenario) -> None:
    """Run one scenario on ``log`` and check its history; raises HistoryViolation."""
    prefix = f"race{next(_examples)}"
    for n, count in enumerate(scenario.seed):
        for i in range(count):
            log.append_sync(f"{prefix}-{n}", [NewEvent(type="Seed", data={"i": i})])
    start_head = log.head_sync()
    start_versions = {f"{prefix}-{n}": count for n, count in enumerate(scenario.seed)}
    appends, contenders = build(scenario, prefix)
    if scenario.mode == "threads":
        barrier = threading.Barrier(len(appends))
        with ThreadPoolExecutor(len(appends)) as pool:
            futures = [
                pool.submit(_attempt_sync, log, e, k in contenders, barrier)
                for k, e in enumerate(appends)
            ]
            attempts = [f.result() for f in futures]
    else:
        attempts = asyncio.run(_race_async(log, appends, contenders, scenario.mode == "held"))
    written = log.read_all_sync(after=start_head, limit=10_000)
    check_history(start_versions, start_head, attempts, written)


def run_property(
    log: ContractLog, examples: int, stop_at_first_failure: bool
) -> tuple[int, list[BaseException]]:
    """Run the race property ``examples`` times; return how many ran and what failed."""
    ran = 0
    failures: list[BaseException] = []

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        report_multiple_bugs=False,
        phases=(Phase.generate,) if stop_at_first_failure else tuple(Phase),
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(scenarios())
    def property_holds(scenario: Scenario) -> None:
        nonlocal ran
        ran += 1
        try:
            race(log, scenario)
        except BaseException as exc:
            failures.append(exc)
            raise

    try:
        property_holds()
    except BaseException as exc:
        if not failures:
            failures.append(exc)
    return ran, failures


def test_racing_appends_with_one_expectation_let_at_most_one_win(
    backend: Backend, tmp_path: Path
) -> None:
    log = backend.open(tmp_path / "race.db", None, None)
    try:
        ran, failures = run_property(log, examples=150, stop_at_first_failure=False)
    finally:
        log.close()
    assert not failures, f"the race property failed: {failures[0]!r}"
    assert ran >= 150


@pytest.mark.parametrize("mode", ["held", "gather", "threads"])
def test_negative_control_expectation_checked_outside_the_transaction_is_caught(
    backend: Backend, tmp_path: Path, mode: str
) -> None:
    """A backend that checks the expectation on a read before queueing (not inside the write
    transaction) must fail the race property, by a double success or an expectation that did
    not hold, not by crashing."""
    log = backend.open_early_check(tmp_path / "broken.db", None, None)
    found: list[BaseException] = []
    ran = 0
    try:
        for seed in range(40):  # the same race, retried until it bites (held: the first time)
            scenario = Scenario((seed % 3,), 2, 0, (), (0, 1), mode)
            ran += 1
            try:
                race(log, scenario)
            except BaseException as exc:
                found.append(exc)
                break
        if not found:
            ran_property, failures = run_property(log, examples=40, stop_at_first_failure=True)
            ran += ran_property
            found.extend(failures)
    finally:
        log.close()
    assert found, f"the broken backend passed {ran} racing examples"
    caught = found[0]
    assert isinstance(caught, HistoryViolation), f"it failed by crashing: {caught!r}"
    assert caught.kind in ("double-success", "expectation-not-held"), caught


def test_negative_control_property_catches_the_broken_backend(
    backend: Backend, tmp_path: Path
) -> None:
    """The hypothesis property itself (random scenarios, all modes) rejects the broken backend."""
    log = backend.open_early_check(tmp_path / "broken.db", None, None)
    try:
        ran, failures = run_property(log, examples=60, stop_at_first_failure=True)
    finally:
        log.close()
    assert failures, f"the broken backend passed {ran} random racing examples"
    first = failures[0]
    assert isinstance(first, HistoryViolation), f"it failed by crashing: {first!r}"
    assert first.kind in ("double-success", "expectation-not-held"), first


@pytest.mark.parametrize("mode", ["threads", "gather"])
def test_racing_retries_of_one_keyed_request_write_it_once(log: ContractLog, mode: str) -> None:
    """Eight concurrent sends of the same keyed request: one writes, seven get its result."""
    entries = (StreamAppend("acct", (NewEvent(type="Deposited", data={"amount": 5}),), 0),)
    tries = 8

    def send() -> AppendResult:
        return log.append_many_sync(entries, key="deposit-1", outcome={"balance": 5})

    if mode == "threads":
        with ThreadPoolExecutor(tries) as pool:
            results = list(pool.map(lambda _: send(), range(tries)))
    else:

        async def gather() -> list[AppendResult]:
            return list(
                await asyncio.gather(
                    *(
                        log.append_many(entries, key="deposit-1", outcome={"balance": 5})
                        for _ in range(tries)
                    )
                )
            )

        results = asyncio.run(gather())
    assert sum(not r.replayed for r in results) == 1
    assert {(r.first_position, r.last_position, r.streams) for r in results} == {
        (1, 1, results[0].streams)
    }
    assert all(r.outcome == {"balance": 5} for r in results)
    assert log.head_sync() == 1

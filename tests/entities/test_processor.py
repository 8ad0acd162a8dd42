from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from facta.entities import Runtime
from facta.entities.processor import Effect, Processor, Send
from facta.entities.processor_runner import ProcessorRunner
from facta.entities.tracking import processor_statuses, skip
from facta.log import InvalidInput, NewEvent, RecordedEvent, SqliteLog
from tests.entities.kinds import Account, Balance, Deposit, Withdraw
from tests.entities.processor_worker import NOTIFY, Tally

WORKER = Path(__file__).with_name("processor_worker.py")


def _deposits(log: SqliteLog, amounts: list[int]) -> None:
    for i, amount in enumerate(amounts):
        event = NewEvent(type="Deposited", data={"amount": amount})
        log.append_sync(f"account-{i % 7}", [event])


def _check_exactly_once(log: SqliteLog, amounts: list[int]) -> None:
    large = sum(1 for a in amounts if a >= 100)
    notes = log.read_stream_sync("notifications")
    causes = Counter(e.causation_id for e in notes)
    assert len(notes) == large and all(n == 1 for n in causes.values())
    counted = log.read_stream_sync("tally-large")
    assert len(counted) == large
    assert len({e.causation_id for e in counted}) == large
    tracking = log.tracking_sync("notify")
    assert tracking is not None and tracking.state == {"seen": len(amounts)}


def test_effects_apply_once_with_tracking_per_micro_batch(log: SqliteLog) -> None:
    rng = random.Random(1)
    amounts = [rng.choice([5, 150]) for _ in range(35)]
    _deposits(log, amounts)

    async def main() -> None:
        runner = ProcessorRunner(Runtime(log), NOTIFY, batch_size=10, batch_ms=5)
        await runner.run_to_head()
        assert runner.handled == 35 and 4 <= runner.batches <= 8
        again = ProcessorRunner(Runtime(log), NOTIFY, batch_size=10)
        await again.run_to_head()
        assert again.handled == 0

    asyncio.run(main())
    _check_exactly_once(log, amounts)
    note = log.read_stream_sync("notifications")[0]
    source = log.events_by_id_sync([note.causation_id or ""])[0]
    assert source.type == "Deposited" and note.correlation_id == str(source.id)


def test_two_runners_of_one_processor_never_apply_twice(log_path: Path) -> None:
    amounts = [150] * 60
    with SqliteLog(log_path) as log:
        _deposits(log, amounts)

    async def main() -> None:
        with SqliteLog(log_path) as one, SqliteLog(log_path) as two:
            runners = [
                ProcessorRunner(Runtime(one), NOTIFY, batch_size=3, batch_ms=1),
                ProcessorRunner(Runtime(two), NOTIFY, batch_size=3, batch_ms=1),
            ]
            head = one.head_sync()
            await asyncio.gather(*(r.run(until=head) for r in runners))
            assert sum(r.handled for r in runners) == 60

    asyncio.run(main())
    with SqliteLog(log_path) as log:
        _check_exactly_once(log, amounts)


def test_sigkilled_processor_restarts_without_losing_or_repeating(log_path: Path) -> None:
    rng = random.Random(7)
    amounts = [rng.choice([10, 100, 250]) for _ in range(1500)]
    with SqliteLog(log_path) as log:
        _deposits(log, amounts)
        head = log.head_sync()
    kills_mid_run = 0
    seen = 0
    for _ in range(10):
        child = subprocess.Popen([sys.executable, str(WORKER), str(log_path), "2"])
        position = _wait_for_progress(log_path, seen, child)
        time.sleep(rng.uniform(0, 0.05))
        if child.poll() is not None:
            break
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        seen = position
        if position < head:
            kills_mid_run += 1
    subprocess.run([sys.executable, str(WORKER), str(log_path), "50"], check=True, timeout=120)
    assert kills_mid_run >= 5, f"only {kills_mid_run} kills landed mid-run"
    with SqliteLog(log_path) as log:
        _check_exactly_once(log, amounts)


def _wait_for_progress(path: Path, seen: int, child: subprocess.Popen[bytes]) -> int:
    """Wait until the child has committed past ``seen`` (or exited); the position now."""
    with SqliteLog(path) as log:
        for _ in range(2000):
            tracking = log.tracking_sync("notify")
            position = 0 if tracking is None else tracking.position
            if position > seen or child.poll() is not None:
                return position
            time.sleep(0.005)
    raise AssertionError("the processor made no progress in 10 s")


def _fragile(state: int, event: RecordedEvent) -> tuple[int, Sequence[Effect]]:
    if event.data.get("amount") == 13:
        raise ValueError(f"unlucky amount at position {event.position}")
    return state + 1, [Send(Tally, "all", 1)]


def test_failing_handler_stops_in_failed_state_until_skipped(log: SqliteLog) -> None:
    _deposits(log, [1, 2, 13, 4])
    fragile = Processor("fragile", _fragile, initial=0, types=("Deposited",), state_type=int)

    async def main() -> None:
        runner = ProcessorRunner(Runtime(log), fragile, max_attempts=3, backoff=0.001, poll=0.01)
        task = asyncio.create_task(runner.run_to_head())
        for _ in range(500):
            await asyncio.sleep(0.01)
            if runner.status == "failed":
                break
        [status] = processor_statuses(log)
        assert (status.state, status.checkpoint, status.failed_at) == ("failed", 2, 3)
        assert status.lag == log.head_sync() - 2
        assert status.last_error == "ValueError: unlucky amount at position 3"
        with pytest.raises(InvalidInput, match="needs a later position"):
            skip(log, "fragile", 1)
        skip(log, "fragile", 3)
        await asyncio.wait_for(task, 10)
        assert runner.state == 3 and runner.checkpoint >= 4
        [status] = processor_statuses(log)
        assert status.state == "ok"

    asyncio.run(main())
    facts = [e.type for e in log.read_stream_sync("processor-fragile")]
    assert facts == ["ProcessorFailed", "ProcessorSkipped"]
    assert len(log.read_stream_sync("tally-all")) == 3


def _withdraw_all(state: Any, event: RecordedEvent) -> tuple[Any, Sequence[Effect]]:
    return state, [Send(Account, "x", Withdraw(int(event.data["amount"])))]


def test_refused_effect_is_recorded_as_a_fact_and_processing_goes_on(log: SqliteLog) -> None:
    _deposits(log, [1, 2])

    async def main() -> None:
        runtime = Runtime(log)
        await runtime.entity(Account, "x").send(Deposit(1))
        runner = ProcessorRunner(runtime, Processor("drain", _withdraw_all, types=("Deposited",)))
        await runner.run_to_head()
        assert await runtime.entity(Account, "x").state() == Balance(0)

    asyncio.run(main())
    # Deposits of 1 and 2, then the entity's own deposit of 1: only the first withdraw fits.
    refused = log.read_stream_sync("processor-drain")
    assert [(e.type, e.data["position"], e.data["error"]) for e in refused] == [
        ("EffectRefused", 2, "InsufficientFunds"),
        ("EffectRefused", 3, "InsufficientFunds"),
    ]

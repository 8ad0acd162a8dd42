"""An idle live subscriber costs almost nothing, and the cross-process waker stops when the
last subscriber leaves.

The cost is the process's CPU while a subscriber waits minus its CPU over as long a time just
before, with no subscriber: threads left by earlier tests in the same process are background, not
the subscriber's cost.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from facta.log import NewEvent, RecordedEvent

from .backends import Backend, ContractLog

IDLE_SECONDS = 2.5


def test_an_idle_subscriber_uses_under_two_percent_of_a_core_and_the_waker_stops(
    backend: Backend, log: ContractLog, capsys: pytest.CaptureFixture[str]
) -> None:
    log.append_sync("s", [NewEvent(type="T")])
    assert not backend.waker_running(log), "the waker runs with no subscriber"

    async def scenario() -> tuple[float, float, float, RecordedEvent, bool]:
        cpu, wall = time.process_time(), time.monotonic()
        await asyncio.sleep(IDLE_SECONDS)
        background = (time.process_time() - cpu) / (time.monotonic() - wall)
        subscription = log.subscribe(after=0)
        first = await anext(subscription)
        assert first.position == 1
        live = asyncio.ensure_future(anext(subscription))  # waits for the next commit
        await asyncio.sleep(0.3)
        running = backend.waker_running(log)
        cpu, wall = time.process_time(), time.monotonic()
        await asyncio.sleep(IDLE_SECONDS)
        cpu, wall = time.process_time() - cpu, time.monotonic() - wall
        await asyncio.to_thread(log.append_sync, "s", [NewEvent(type="T")])
        second = await asyncio.wait_for(live, 5)
        await subscription.aclose()  # type: ignore[attr-defined]
        return background, cpu, wall, second, running

    background, cpu, wall, second, running = asyncio.run(scenario())
    share = cpu / wall - background
    with capsys.disabled():
        print(
            f"\n[contract:{backend.name}] idle subscriber: {cpu * 1000:.1f} ms CPU in "
            f"{wall:.2f} s, {share:.2%} of a core above the {background:.2%} without it"
        )
    assert running, "no waker ran while a subscriber waited"
    assert second.position == 2, "the idle subscriber missed the next commit"
    assert share < 0.02, f"an idle subscriber used {share:.2%} of a core"
    deadline = time.monotonic() + 5
    while backend.waker_running(log) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not backend.waker_running(log), "the waker kept running with no subscriber"

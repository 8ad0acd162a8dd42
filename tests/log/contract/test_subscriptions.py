"""Subscriptions: catch-up hands off to live with no gap or duplicate, a slow consumer never
makes the subscription hold more than one page, filtered subscriptions report checkpoints."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from facta.log import Checkpoint, NewEvent, RecordedEvent

from .backends import Backend, ContractLog


def ev(kind: str = "Common", **data: object) -> NewEvent:
    return NewEvent(type=kind, data=dict(data))


class PageSpy:
    """Wraps the log's page read (the only read a subscription makes) to see what it buffers."""

    def __init__(self, log: ContractLog) -> None:
        self.calls: list[tuple[int, int, int, int]] = []  # (after, events, scanned, head)
        self.fetched = 0
        self.delivered = 0
        self.most_buffered = 0
        self.pending_at_read: list[int] = []
        original = log.read_page

        async def read_page(
            after: int,
            limit: int,
            types: Sequence[str] | None,
            stream_prefix: str | None,
            scan_window: int | None,
        ) -> tuple[list[RecordedEvent], int, int]:
            self.pending_at_read.append(self.fetched - self.delivered)
            events, scanned, head = await original(after, limit, types, stream_prefix, scan_window)
            assert len(events) <= limit
            self.calls.append((after, len(events), scanned, head))
            self.fetched += len(events)
            self.most_buffered = max(self.most_buffered, self.fetched - self.delivered)
            return events, scanned, head

        log.read_page = read_page  # type: ignore[method-assign]


class Writer(threading.Thread):
    """Appends continuously from another thread until stopped."""

    def __init__(self, log: ContractLog, events_per_append: int, pause: float) -> None:
        super().__init__(daemon=True)
        self.log = log
        self.events_per_append = events_per_append
        self.pause = pause
        self.stop = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            batch = [ev(n=n + i) for i in range(self.events_per_append)]
            self.log.append_sync(f"live-{n % 3}", batch)
            n += self.events_per_append
            time.sleep(self.pause)


def seed(log: ContractLog, count: int, rare_every: int = 0) -> None:
    """``count`` events; with ``rare_every``, every n-th is a "Rare" event in stream rare-1."""
    run: list[NewEvent] = []
    for i in range(count):
        if rare_every and (i + 1) % rare_every == 0:
            if run:
                log.append_sync("common-1", run)
                run = []
            log.append_sync("rare-1", [ev("Rare", n=i)])
        else:
            run.append(ev(n=i))
            if len(run) == 250:
                log.append_sync("common-1", run)
                run = []
    if run:
        log.append_sync("common-1", run)


def test_catch_up_hands_off_to_live_while_writers_commit(log: ContractLog) -> None:
    seed(log, 1500)
    spy = PageSpy(log)
    writer = Writer(log, events_per_append=1, pause=0.0005)
    handoff: list[int] = []  # the head when the subscription first reached the end of the log

    async def follow() -> tuple[list[RecordedEvent], int]:
        delivered: list[RecordedEvent] = []
        final_head = 0
        writer.start()
        async for event in log.subscribe(after=0, page_size=64, idle_timeout=30.0):
            delivered.append(event)
            if not handoff and any(scanned >= head for _, _, scanned, head in spy.calls):
                handoff.append(next(h for _, _, s, h in spy.calls if s >= h))
            if not final_head and handoff and log.head_sync() >= handoff[0] + 300:
                writer.stop.set()
                await asyncio.to_thread(writer.join, 10)
                final_head = await log.head()
            if final_head and event.position >= final_head:
                break
        return delivered, final_head

    try:
        delivered, final_head = asyncio.run(asyncio.wait_for(follow(), 60))
    finally:
        writer.stop.set()
        writer.join(10)
    assert [e.position for e in delivered] == list(range(1, final_head + 1))
    assert [e.id for e in delivered] == [e.id for e in log.read_all_sync(limit=final_head)]
    first_head = spy.calls[0][3]
    assert handoff[0] > first_head, "no writer committed while the subscription caught up"
    assert final_head - handoff[0] >= 300, "too few events were delivered live"
    assert len(spy.calls) >= 1500 // 64


def test_a_slow_consumer_never_makes_the_subscription_buffer_more_than_a_page(
    log: ContractLog,
) -> None:
    seed(log, 100)
    spy = PageSpy(log)
    writer = Writer(log, events_per_append=20, pause=0.001)
    page = 16
    lag = 0

    async def consume() -> int:
        nonlocal lag
        writer.start()
        received = 0
        async for event in log.subscribe(after=0, page_size=page, idle_timeout=30.0):
            spy.delivered += 1
            received += 1
            lag = max(lag, spy.calls[-1][3] - event.position)
            await asyncio.sleep(0.002)  # slow: the writer gets far ahead
            if received == 400:
                break
        return received

    try:
        received = asyncio.run(asyncio.wait_for(consume(), 60))
    finally:
        writer.stop.set()
        writer.join(10)
    assert received == 400
    assert spy.most_buffered <= page, f"the subscription held {spy.most_buffered} events"
    assert set(spy.pending_at_read) == {0}, "a page was read before the last one was consumed"
    assert spy.most_buffered == page, "pages were never full: the consumer was not slow"
    assert lag >= 10 * page, f"the log was only {lag} events ahead of the consumer"


@pytest.mark.parametrize(
    "subscribe_filter",
    [{"types": ["Rare"]}, {"stream_prefix": "rare-"}],
    ids=["types", "stream_prefix"],
)
def test_filtered_subscription_yields_a_checkpoint_at_least_every_k_scanned_events(
    log: ContractLog, subscribe_filter: dict[str, Any]
) -> None:
    seed(log, 3000, rare_every=400)
    k = 100

    async def follow() -> list[RecordedEvent | Checkpoint]:
        items: list[RecordedEvent | Checkpoint] = []
        appended = False
        async for item in log.subscribe_with_checkpoints(
            after=0, page_size=50, checkpoint_every=k, idle_timeout=30.0, **subscribe_filter
        ):
            items.append(item)
            if isinstance(item, Checkpoint) and item.position == 3000 and not appended:
                appended = True  # caught up: now the filtered subscription goes live
                await asyncio.to_thread(seed_live, log)
            if isinstance(item, RecordedEvent) and item.data["n"] == -1:
                break
        return items

    items = asyncio.run(asyncio.wait_for(follow(), 60))
    positions = [0] + [item.position for item in items]
    gaps = [b - a for a, b in itertools.pairwise(positions)]
    assert min(gaps) >= 0, "the subscription went backwards"
    assert max(gaps) <= k, f"{max(gaps)} events scanned without a checkpoint (K={k})"
    events = [item for item in items if isinstance(item, RecordedEvent)]
    wanted = [e for e in log.read_all_sync(limit=10_000) if e.stream == "rare-1"]
    assert [e.position for e in events] == [e.position for e in wanted]
    assert len(events) == 3000 // 400 + 1
    checkpoints = [item for item in items if isinstance(item, Checkpoint)]
    assert len(checkpoints) >= (3000 + 350) // k - len(events)


def seed_live(log: ContractLog) -> None:
    log.append_sync("common-1", [ev(n=i) for i in range(250)])
    log.append_sync("rare-1", [ev("Rare", n=-1)])
    log.append_sync("common-1", [ev(n=i) for i in range(100)])


def test_a_subscription_resumes_after_the_last_position_it_delivered(log: ContractLog) -> None:
    seed(log, 230)

    async def take(after: int, count: int) -> list[int]:
        taken: list[int] = []
        subscription = log.subscribe(after=after, page_size=40, idle_timeout=30.0)
        async for event in subscription:
            taken.append(event.position)
            if len(taken) == count:
                break
        await subscription.aclose()  # type: ignore[attr-defined]
        return taken

    first = asyncio.run(take(0, 100))
    log.append_sync("more", [ev(n=i) for i in range(20)])
    rest = asyncio.run(take(first[-1], 150))
    assert first + rest == list(range(1, 251))


def test_a_consumer_holding_an_event_holds_no_read_snapshot(
    backend: Backend, log: ContractLog
) -> None:
    """Pages are read, released, then yielded: a read transaction never spans an ``await``."""
    seed(log, 300)
    path = Path(log.path)

    async def hold_then_finish() -> tuple[bool, bool, list[int]]:
        subscription = log.subscribe(after=0, page_size=50, idle_timeout=30.0)
        positions = [(await anext(subscription)).position]
        await asyncio.to_thread(log.append_sync, "more", [ev(n=i) for i in range(100)])
        pinned = await asyncio.to_thread(backend.snapshot_pinned, path)
        with backend.pin_snapshot(path):
            await asyncio.to_thread(log.append_sync, "more", [ev(n=-1)])
            detector_works = await asyncio.to_thread(backend.snapshot_pinned, path)
        async for event in subscription:
            positions.append(event.position)
            if event.position == 401:
                break
        await subscription.aclose()  # type: ignore[attr-defined]
        return pinned, detector_works, positions

    pinned, detector_works, positions = asyncio.run(hold_then_finish())
    assert detector_works, "the snapshot detector missed a snapshot held on purpose"
    assert not pinned, "a subscription held a read snapshot while its consumer held an event"
    assert positions == list(range(1, 402))


def test_a_subscriber_wakes_for_a_commit_from_another_task(log: ContractLog) -> None:
    """With a 30 s idle timeout only a wake-up can deliver these events in time."""

    async def main() -> list[int]:
        got: list[int] = []

        async def follow() -> None:
            async for event in log.subscribe(after=0, idle_timeout=30.0):
                got.append(event.position)
                if len(got) == 5:
                    return

        follower = asyncio.create_task(follow())
        for n in range(5):
            await asyncio.sleep(0.02)
            await log.append("s", [ev(n=n)])
        await asyncio.wait_for(follower, 10)
        return got

    assert asyncio.run(main()) == [1, 2, 3, 4, 5]

"""The body of the suite's worker processes (started with multiprocessing ``spawn``)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from pathlib import Path
from typing import Any

from facta.log import NewEvent, WrongExpectedVersion

from .backends import open_backend


def append_and_follow(
    backend: str,
    path: str,
    worker: int,
    appends: int,
    solo: int,
    streams: list[str],
    barrier: Any,
    results: Any,
) -> None:
    """Append ``appends`` events to random ``streams`` with exact expectations from this
    process's last read, while a subscriber follows the whole log; report both to ``results``.

    Then each worker in turn appends ``solo`` events while the other only listens, so those
    reach the other process through its cross-process wake-up alone. Attempts are
    ``(stream, expected, ok, position_or_actual, answered_at, solo)``; receipts are
    ``(position, received_at)``; times are ``time.time()``, comparable across processes.
    """
    results.put(asyncio.run(_work(backend, path, worker, appends, solo, streams, barrier)))


async def _work(
    backend: str,
    path: str,
    worker: int,
    appends: int,
    solo: int,
    streams: list[str],
    barrier: Any,
) -> dict[str, Any]:
    log = open_backend(backend, Path(path))
    received: list[tuple[int, float]] = []
    attempts: list[tuple[str, int, bool, int, float, bool]] = []
    subscribed = asyncio.Event()

    async def follow() -> None:
        # A long idle timeout: only a wake-up, never a periodic re-read, delivers an event.
        subscription = log.subscribe(after=0, page_size=100, idle_timeout=60.0)
        subscribed.set()
        async for event in subscription:
            received.append((event.position, time.time()))

    follower = asyncio.create_task(follow())
    await subscribed.wait()
    await asyncio.sleep(0.05)  # the subscriber reaches its first wait
    await asyncio.to_thread(barrier.wait, 30)
    rng = random.Random(worker)
    last_read: dict[str, int] = {}

    async def attempt(i: int, solo: bool) -> None:
        stream = rng.choice(streams)
        if stream not in last_read or solo or rng.random() < 0.5:
            last_read[stream] = await log.stream_version(stream)
        expected = last_read[stream]
        event = NewEvent(type="Tick", data={"worker": worker, "i": i})
        try:
            result = await log.append(stream, [event], expect=expected)
        except WrongExpectedVersion as exc:
            attempts.append((stream, expected, False, exc.actual, time.time(), solo))
            last_read[stream] = exc.actual
        else:
            assert result.first_position is not None
            attempts.append((stream, expected, True, result.first_position, time.time(), solo))
            last_read[stream] = expected + 1

    for i in range(appends):
        await attempt(i, solo=False)
        await asyncio.sleep(rng.uniform(0.001, 0.006))
    for turn in (0, 1):
        await asyncio.to_thread(barrier.wait, 60)
        if turn == worker:
            for i in range(solo):
                await attempt(appends + i, solo=True)
                await asyncio.sleep(rng.uniform(0.005, 0.015))
    await asyncio.to_thread(barrier.wait, 60)  # both are done writing
    head = await log.head()
    deadline = time.monotonic() + 20
    while (not received or received[-1][0] < head) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    follower.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await follower
    await asyncio.to_thread(log.close)
    return {"worker": worker, "attempts": attempts, "received": received, "head": head}

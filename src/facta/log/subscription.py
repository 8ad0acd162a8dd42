"""Subscriptions: catch up from a position in pages, then follow the log live.

The subscriber clears its wake-up event *before* reading a page, so a commit that lands during
the read sets it again and is never missed. No read transaction is open while the consumer
holds an item: each page is read, released, then yielded.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any, Protocol

from facta.log.event import Checkpoint, RecordedEvent
from facta.log.metrics import LogMetrics
from facta.log.wakeup import CommitSignal

_ids = itertools.count(1)


class _PagedLog(Protocol):
    signal: CommitSignal
    metrics: LogMetrics

    async def read_page(
        self,
        after: int,
        limit: int,
        types: Sequence[str] | None,
        stream_prefix: str | None,
        scan_window: int | None,
    ) -> tuple[list[RecordedEvent], int, int]: ...


async def subscribe_log(
    log: _PagedLog,
    *,
    after: int,
    types: Sequence[str] | None,
    stream_prefix: str | None,
    page_size: int,
    checkpoints: bool,
    checkpoint_every: int = 10_000,
    idle_timeout: float = 1.0,
) -> AsyncIterator[Any]:
    filtered = bool(types) or bool(stream_prefix)
    window = checkpoint_every if filtered else None
    wake = asyncio.Event()
    token = log.signal.register(wake)
    sub_id = next(_ids)
    position = after
    try:
        while True:
            wake.clear()
            events, scanned, head = await log.read_page(
                position, page_size, types, stream_prefix, window
            )
            for event in events:
                position = event.position
                with log.metrics.lock:
                    _record_lag(log.metrics, sub_id, head - position, event.recorded_at)
                yield event
            if scanned > position:
                position = scanned
                if checkpoints:
                    yield Checkpoint(position)
            if len(events) >= page_size or position < head:
                continue
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation
            # that arrives as the wake-up fires, and the subscriber would then never stop.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(idle_timeout):
                    await wake.wait()
    finally:
        log.signal.unregister(token)
        with log.metrics.lock:
            log.metrics.subscription_lag.pop(sub_id, None)


def _record_lag(metrics: LogMetrics, sub_id: int, positions: int, recorded_at: datetime) -> None:
    seconds = max(0.0, time.time() - recorded_at.timestamp())
    metrics.subscription_lag[sub_id] = (max(0, positions), seconds)

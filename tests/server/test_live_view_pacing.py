"""How often a live view query sends a client updates: at once while it keeps up, at most
``max_rate`` a second once it falls behind or when it asks (the stream alone, no server)."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from types import SimpleNamespace
from typing import Any

from facta.server.live_views import LiveClient, LiveMetrics, LiveViewStream


class _Hub:
    def __init__(self) -> None:
        self.metrics = LiveMetrics()
        self.interval = 0.1  # the server's cap for slow clients: 10 messages a second

    def detach(self, client: LiveClient) -> None:
        del client


class _Live:
    """What a stream reads of its shared computation: the rows and the position."""

    def __init__(self, hub: _Hub) -> None:
        self.hub = hub
        self.result = SimpleNamespace(position=0, definition_hash="h", key=["k"], columns=["k"])
        self.rows: dict[Any, dict[str, Any]] = {}

    @property
    def position(self) -> int:
        return int(self.result.position)

    def catch_up(self, after: int) -> None:
        return None


def _stream(**options: Any) -> tuple[LiveViewStream, LiveClient, _Hub]:
    hub = _Hub()
    live = _Live(hub)
    client = LiveClient(live)  # type: ignore[arg-type]
    stream = LiveViewStream(hub, live, client, None, **options)  # type: ignore[arg-type]
    return stream, client, hub


async def _run(
    stream: LiveViewStream,
    client: LiveClient,
    *,
    commits: int,
    every: float,
    stall_first_update: float = 0.0,
) -> list[tuple[float, dict[str, Any]]]:
    """Merge ``commits`` updates ``every`` seconds; return (received at, data) of each update.

    The consumer stalls once, on the first update, for ``stall_first_update`` seconds: while it
    does, the stream cannot hand over its next message (as with a client not reading its
    socket)."""
    received: list[tuple[float, dict[str, Any]]] = []
    snapshot = asyncio.Event()

    async def produce() -> None:
        await snapshot.wait()  # commits after the client's snapshot
        for n in range(1, commits + 1):
            client.merge(n, {("a",): {"k": "a", "n": n}}, set())
            await asyncio.sleep(every)

    async def consume() -> None:
        stalled = False
        async for batch in stream.batches():
            for message in batch:
                if message.event == "snapshot":
                    snapshot.set()
                if message.event != "update":
                    continue
                data = json.loads(message.data)
                received.append((time.monotonic(), data))
                if not stalled and stall_first_update:
                    stalled = True
                    await asyncio.sleep(stall_first_update)
                if data["position"] == commits:
                    return

    producer = asyncio.create_task(produce())
    await asyncio.wait_for(consume(), timeout=60)
    await producer
    return received


def test_a_client_that_keeps_up_gets_every_update_at_once() -> None:
    # slow_send is raised so a process paused by a loaded machine cannot look like a slow client.
    stream, client, hub = _stream(slow_send=5.0)
    received = asyncio.run(_run(stream, client, commits=30, every=0.02))
    assert [data["position"] for _, data in received] == list(range(1, 31))
    assert received[-1][1]["upsert"] == [{"k": "a", "n": 30}]
    assert hub.metrics.slow == 0


def test_a_client_that_falls_behind_gets_at_most_ten_messages_a_second() -> None:
    stream, client, hub = _stream()
    commits, every = 300, 0.005
    received = asyncio.run(
        _run(stream, client, commits=commits, every=every, stall_first_update=0.3)
    )
    assert hub.metrics.slow >= 1
    # After the stall, for the one second a slow client is held to the slow rate: at most 10
    # messages a second (plus the one that may go out as the second starts).
    stalled_at = received[0][0]
    window = [at for at, _ in received if stalled_at + 0.3 <= at < stalled_at + 1.3]
    assert len(window) <= 11, f"{len(window)} messages within a second of a slow client"
    assert len(received) < commits / 3  # the rest merged: fewer, larger updates
    # Nothing lost: the last update brings the client to the last commit's row.
    assert received[-1][1]["position"] == commits
    assert received[-1][1]["upsert"] == [{"k": "a", "n": commits}]


def test_a_client_may_ask_for_a_fixed_rate() -> None:
    stream, client, hub = _stream(max_rate=5.0, slow_send=5.0)
    received = asyncio.run(_run(stream, client, commits=200, every=0.005))
    moments = [at for at, _ in received]
    gaps = [b - a for a, b in itertools.pairwise(moments)]
    assert gaps and min(gaps) >= 0.19, "messages closer than 1/max_rate"
    assert received[-1][1]["upsert"] == [{"k": "a", "n": 200}]
    assert hub.metrics.slow == 0

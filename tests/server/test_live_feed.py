"""The live machinery on a real log: a slow subscriber is dropped and resumes without loss."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from facta.log import NewEvent, RecordedEvent, SqliteLog
from facta.server.live import LiveMessage, LogFeed, LogFilter, LogStream, heartbeat


def _events(count: int) -> list[NewEvent]:
    return [NewEvent(type="Tick", data={"n": n}) for n in range(count)]


async def _take(messages: AsyncIterator[LiveMessage], count: int) -> list[LiveMessage]:
    return [await anext(messages) for _ in range(count)]


def test_a_subscriber_that_falls_behind_is_dropped_and_resumes_by_id(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with SqliteLog(tmp_path / "facta.db") as log:
            await log.append("warmup", _events(3))
            feed = LogFeed(log, queue_limit=5)
            await feed.start()
            try:
                stream = LogStream(feed, LogFilter(), after=0)
                messages = stream.messages()
                early = await _take(messages, 3)  # caught up from the log
                waiting = asyncio.ensure_future(anext(messages))  # now attached and idle
                await asyncio.sleep(0.05)
                assert feed.subscribers == 1
                # One commit of 20 events is offered in one go: the queue (5) overflows.
                await log.append("burst", _events(20))
                queued = [await waiting, *await _take(messages, 4)]
                behind = await anext(messages)
                assert behind.event == "behind"
                assert "fell too far behind" in behind.data
                assert feed.subscribers == 0
                resumed = LogStream(feed, LogFilter(), after=queued[-1].position or 0)
                rest = await _take(resumed.messages(), 15)
            finally:
                await feed.stop()
            positions = [m.position for m in early + queued + rest]
            assert positions == list(range(1, 24))

    asyncio.run(scenario())


def test_a_slow_subscriber_within_its_queue_is_not_dropped(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with SqliteLog(tmp_path / "facta.db") as log:
            feed = LogFeed(log, queue_limit=50)
            await feed.start()
            try:
                messages = LogStream(feed, LogFilter(types=frozenset({"Tick"})), 0).messages()
                waiting = asyncio.ensure_future(anext(messages))
                await asyncio.sleep(0.05)
                await log.append("mixed", [*_events(20), NewEvent(type="Tock")])
                got = [await waiting, *await _take(messages, 19)]
            finally:
                await feed.stop()
            assert [m.event for m in got] == ["log"] * 20
            assert [m.position for m in got] == list(range(1, 21))

    asyncio.run(scenario())


def test_progress_carries_the_position_the_stream_is_complete_to(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with SqliteLog(tmp_path / "facta.db") as log:
            await log.append("noise", _events(7))
            feed = LogFeed(log, queue_limit=10)
            await feed.start()
            try:
                stream = LogStream(feed, LogFilter(types=frozenset({"Rare"})), after=0)
                beats = heartbeat(stream, interval=0.05)
                first = await anext(beats)
                await log.append("noise", _events(2))
                await asyncio.sleep(0.2)
                later = await anext(beats)
                while later.position is not None and later.position < 9:
                    later = await anext(beats)
                await beats.aclose()  # type: ignore[attr-defined]
            finally:
                await feed.stop()
            assert (first.event, first.position) == ("progress", 7)
            assert (later.event, later.position) == ("progress", 9)

    asyncio.run(scenario())


class ForgetsTheGap(LogStream):
    """Broken on purpose: once attached to the feed it skips what the feed passed meanwhile."""

    async def _catch_up(self, until: int) -> AsyncIterator[RecordedEvent]:
        if self._subscriber is not None:
            return
        async for event in super()._catch_up(until):
            yield event


async def _positions_while_the_feed_moves(path: Path, stream_class: type[LogStream]) -> list[int]:
    """Catch up 1,200 events in pages of 500; after the first page, 50 more are committed."""
    async with SqliteLog(path) as log:
        for _ in range(12):
            await log.append("history", _events(100))
        feed = LogFeed(log, queue_limit=1000)
        await feed.start()
        try:
            messages = stream_class(feed, LogFilter(), after=0, page_size=500).messages()
            positions = [m.position for m in await _take(messages, 1)]
            await log.append("during", _events(50))
            while feed.position < 1250:
                await asyncio.sleep(0.01)
            while not positions or (positions[-1] or 0) < 1250:
                try:
                    message = await asyncio.wait_for(anext(messages), 2)
                except TimeoutError:
                    break
                positions.append(message.position)
            await messages.aclose()  # type: ignore[attr-defined]
        finally:
            await feed.stop()
    return [p for p in positions if p is not None]


def test_events_committed_while_catching_up_are_neither_lost_nor_repeated(tmp_path: Path) -> None:
    positions = asyncio.run(_positions_while_the_feed_moves(tmp_path / "a.db", LogStream))
    assert positions == list(range(1, 1251))


def test_negative_control_a_stream_that_skips_the_gap_loses_events(tmp_path: Path) -> None:
    positions = asyncio.run(_positions_while_the_feed_moves(tmp_path / "b.db", ForgetsTheGap))
    lost = sorted(set(range(1, 1251)) - set(positions))
    assert lost == list(range(1201, 1251)), "the broken stream should lose exactly the gap"


def test_a_stream_is_told_when_the_feed_stops(tmp_path: Path) -> None:
    async def scenario() -> LiveMessage:
        async with SqliteLog(tmp_path / "facta.db") as log:
            await log.append("one", _events(1))
            feed = LogFeed(log, queue_limit=10)
            await feed.start()
            messages = LogStream(feed, LogFilter(), after=0).messages()
            assert (await anext(messages)).position == 1
            waiting = asyncio.ensure_future(anext(messages))
            await asyncio.sleep(0.05)
            await feed.stop()
            return await asyncio.wait_for(waiting, 5)

    closing = asyncio.run(scenario())
    assert closing.event == "closing"
    assert closing.position is None
    assert '"position":1' in closing.data

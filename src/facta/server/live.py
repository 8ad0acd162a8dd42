"""Live delivery: one shared follower of the log, fanned out to bounded per-connection queues.

How a live log stream works (``GET /log/live``):

1. *Catch up* from the client's position (``after`` or ``Last-Event-ID``) by reading pages of
   the log, until close to the feed's position.
2. *Attach* to the :class:`LogFeed`: from now on every event after the feed's position at that
   moment is offered to this connection's queue (if it passes the filter).
3. *Close the gap* between where catching up stopped and that attach position, from the log.
4. *Follow* the queue. Positions only grow, and each event is delivered once: nothing lost,
   nothing repeated, so ``Last-Event-ID`` = position is a complete resume point.

A connection whose queue is full is *dropped* rather than allowed to hold unbounded memory: it
receives what it had queued, then a ``behind`` message, and the stream ends; the client
reconnects with ``Last-Event-ID`` and catches up from the log. An idle connection receives
``progress`` (with the position scanned so far as its id) every heartbeat.

The seam for live *view* queries (issue 5, once views exist). A live query is the same shape
with a different source: a key (view, shape, parameters) instead of a log filter, a shared
producer per key (identical queries share one computation, as all log streams share one
:class:`LogFeed` here), a first ``snapshot`` message instead of catching up, and positioned
``{position, view_hash, upsert, delete}`` diffs after each view checkpoint instead of events.
Two things differ: resuming from ``Last-Event-ID`` sends one coalesced diff of the rows changed
since that position (views record the position at which each row last changed), and a slow
client's pending diffs are merged per row (coalescing, ≤ 10 messages/s) instead of the client
being dropped. :class:`LiveMessage`, :class:`LiveSource` and :func:`heartbeat` are shared by
both; a ``ViewFeed`` with a coalescing subscriber would sit beside :class:`LogFeed` and be routed
from ``view_routes.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol

import msgspec

from facta.log.event import RecordedEvent
from facta.log.sqlite import SqliteLog

_log = logging.getLogger("facta.server")
_encoder = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class LiveMessage:
    """One SSE message: its event name, its JSON data, and its id (a log position) if any."""

    event: str
    data: str
    position: int | None = None


@dataclass(frozen=True, slots=True)
class LogFilter:
    """Which events a live log stream wants: any of ``types``, streams starting with a prefix."""

    types: frozenset[str] = frozenset()
    stream_prefix: str | None = None

    def matches(self, event: RecordedEvent) -> bool:
        if self.types and event.type not in self.types:
            return False
        return self.stream_prefix is None or event.stream.startswith(self.stream_prefix)


class Subscriber:
    """A connection's bounded queue of events from the feed."""

    def __init__(self, log_filter: LogFilter, limit: int, start: int) -> None:
        self.filter = log_filter
        self.start = start
        self.dropped = False
        self.reason = "behind"
        self._limit = limit
        self._items: deque[RecordedEvent] = deque()
        self._ready = asyncio.Event()

    def offer(self, event: RecordedEvent) -> bool:
        """Queue ``event`` if it matches; False once the queue overflowed (drop me)."""
        if self.dropped:
            return False
        if not self.filter.matches(event):
            return True
        if len(self._items) >= self._limit:
            self.dropped = True
        else:
            self._items.append(event)
        self._ready.set()
        return not self.dropped

    def drop(self, reason: str) -> None:
        """End this subscription: ``behind`` (queue overflow) or ``closing`` (feed stopped)."""
        self.dropped = True
        self.reason = reason
        self._ready.set()

    @property
    def idle(self) -> bool:
        return not self._items and not self.dropped

    def drain(self, limit: int) -> list[RecordedEvent]:
        """Up to ``limit`` more queued events, without waiting."""
        taken: list[RecordedEvent] = []
        while self._items and len(taken) < limit:
            taken.append(self._items.popleft())
        return taken

    async def next(self) -> RecordedEvent | None:
        """The next queued event; None once the queue is empty and the subscriber was dropped."""
        while True:
            if self._items:
                return self._items.popleft()
            if self.dropped:
                return None
            self._ready.clear()
            await self._ready.wait()


class LogFeed:
    """Follows the log once for the whole server and offers each event to every subscriber."""

    def __init__(self, log: SqliteLog, queue_limit: int) -> None:
        self.log = log
        self.queue_limit = queue_limit
        self.position = 0
        self._task: asyncio.Task[None] | None = None
        self._subscribers: set[Subscriber] = set()
        # Called on the loop after each event the feed sees (e.g. to wake view maintainers).
        self.listeners: list[Callable[[], None]] = []

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    async def start(self) -> None:
        """Start following the log from its current head."""
        self.position = await self.log.head()
        self._task = asyncio.create_task(self._follow(), name="facta-live-feed")

    async def stop(self, timeout: float = 5.0) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if not done:
            _log.warning("the live log feed did not stop within %.1f s of being cancelled", timeout)
        elif not task.cancelled() and task.exception() is not None:
            _log.warning("the live log feed had stopped with %r", task.exception())

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _follow(self) -> None:
        try:
            async for event in self.log.subscribe(after=self.position):
                for subscriber in tuple(self._subscribers):
                    if not subscriber.offer(event):
                        self._subscribers.discard(subscriber)
                self.position = event.position
                for listener in self.listeners:
                    listener()
        except Exception:
            _log.exception("the live log feed stopped")
            raise
        finally:
            for subscriber in tuple(self._subscribers):
                subscriber.drop("closing")

    def attach(self, log_filter: LogFilter) -> Subscriber:
        subscriber = Subscriber(log_filter, self.queue_limit, self.position)
        self._subscribers.add(subscriber)
        return subscriber

    def detach(self, subscriber: Subscriber) -> None:
        self._subscribers.discard(subscriber)


class LiveSource(Protocol):
    """What :func:`heartbeat` needs of a live stream (a log stream now, a live query later)."""

    def batches(self) -> AsyncIterator[list[LiveMessage]]: ...

    def progress(self) -> int:
        """The position up to which everything this stream owes its client was sent."""
        ...


class LogStream:
    """One live log stream from position ``after`` (steps 1-4 above)."""

    def __init__(
        self, feed: LogFeed, log_filter: LogFilter, after: int, *, page_size: int = 500
    ) -> None:
        self.feed = feed
        self.filter = log_filter
        self.complete = after
        self.page_size = page_size
        self._subscriber: Subscriber | None = None
        self._live = False

    def progress(self) -> int:
        subscriber = self._subscriber
        if self._live and subscriber is not None and subscriber.idle:
            # Everything up to the feed's position was offered and either sent or filtered out.
            return max(self.complete, self.feed.position)
        return self.complete

    async def messages(self) -> AsyncIterator[LiveMessage]:
        """The stream's messages one by one (see :meth:`batches`)."""
        async for batch in self.batches():
            for message in batch:
                yield message

    async def batches(self) -> AsyncIterator[list[LiveMessage]]:
        """The stream's messages in batches: what was ready to send at once is one write."""
        while True:
            until = self.feed.position
            async for batch in self._batched(self._catch_up(until)):
                yield batch
            self.complete = max(self.complete, until)
            if self.feed.position - self.complete <= self.page_size:
                break
        subscriber = self._subscriber = self.feed.attach(self.filter)
        try:
            async for batch in self._batched(self._catch_up(subscriber.start)):
                yield batch
            self.complete = max(self.complete, subscriber.start)
            self._live = True
            while (live := await subscriber.next()) is not None:
                batch = []
                for event in (live, *subscriber.drain(self.page_size)):
                    if event.position > self.complete:
                        batch.append(self._sent(event))
                if batch:
                    yield batch
            if subscriber.reason == "behind":
                detail = (
                    "this stream fell too far behind the log and was closed; "
                    "reconnect with Last-Event-ID to resume"
                )
            else:
                detail = "the server stopped following the log; reconnect with Last-Event-ID"
            position = self.complete
            yield [LiveMessage(subscriber.reason, _json({"position": position, "detail": detail}))]
        finally:
            self.feed.detach(subscriber)

    async def _batched(
        self, events: AsyncIterator[RecordedEvent]
    ) -> AsyncIterator[list[LiveMessage]]:
        batch: list[LiveMessage] = []
        async for event in events:
            batch.append(self._sent(event))
            if len(batch) >= self.page_size:
                yield batch
                batch = []
        if batch:
            yield batch

    def _sent(self, event: RecordedEvent) -> LiveMessage:
        self.complete = event.position
        return event_message(event)

    async def _catch_up(self, until: int) -> AsyncIterator[RecordedEvent]:
        """Matching events in ``(complete, until]`` read from the log, page by page.

        The caller advances ``complete`` as it sends; when the log holds no more matching
        events up to ``until``, the stream is complete up to ``until``.
        """
        types = sorted(self.filter.types) or None
        after = self.complete
        while after < until:
            page = await self.feed.log.read_all(
                after=after,
                limit=self.page_size,
                types=types,
                stream_prefix=self.filter.stream_prefix,
            )
            for event in page:
                if event.position > until:
                    return
                yield event
            if len(page) < self.page_size:
                return
            after = page[-1].position


async def heartbeat(source: LiveSource, interval: float) -> AsyncIterator[LiveMessage]:
    """The messages of ``source`` one by one, with ``progress`` when idle (see
    :func:`heartbeat_batches`)."""
    batches = heartbeat_batches(source, interval)
    try:
        async for batch in batches:
            for message in batch:
                yield message
    finally:
        await batches.aclose()  # type: ignore[attr-defined]


async def heartbeat_batches(
    source: LiveSource, interval: float
) -> AsyncIterator[list[LiveMessage]]:
    """The batches of ``source``; when none came for ``interval`` seconds, a ``progress``.

    The progress id is the position up to which the stream is complete, so a filtered stream
    that resumes from it does not rescan what it already scanned.
    """
    batches = source.batches()
    pending: asyncio.Future[list[LiveMessage]] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(batches))
            done, _ = await asyncio.wait({pending}, timeout=interval)
            if not done:
                position = source.progress()
                yield [LiveMessage("progress", _json({"position": position}), position)]
                continue
            try:
                batch = pending.result()
            except StopAsyncIteration:
                return
            finally:
                pending = None
            yield batch
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await pending
        aclose = getattr(batches, "aclose", None)
        if aclose is not None:
            await aclose()


def event_message(event: RecordedEvent) -> LiveMessage:
    return LiveMessage("log", _json(event_json(event)), event.position)


def event_json(event: RecordedEvent) -> dict[str, object]:
    """A recorded event as a JSON object (the record itself encodes as an array)."""
    return {
        "position": event.position,
        "stream": event.stream,
        "version": event.version,
        "type": event.type,
        "schema_version": event.schema_version,
        "id": str(event.id),
        "recorded_at": event.recorded_at.isoformat(),
        "data": event.data,
        "metadata": event.metadata,
    }


def _json(value: object) -> str:
    return _encoder.encode(value).decode()

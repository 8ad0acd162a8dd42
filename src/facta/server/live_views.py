"""Live view queries: one shared computation per query, positioned diffs to every client.

A :class:`LiveQuery` keeps the rows of one :class:`~facta.server.view_query.ViewQuery` by key.
When the view commits a checkpoint, the query is run again (on a reader thread) and compared
with the rows it held: rows that are new or differ are *upserts*, rows that vanished (a group
leaving a top-k) are *deletes*. Each row remembers the position at which it last changed and
each delete is kept as a tombstone, so a client that reconnects with ``Last-Event-ID = P``
receives one coalesced update of everything after ``P`` — provided this computation has been
running since ``P`` (else it gets ``reset`` and a fresh snapshot).

All clients of the same query share the computation (``recomputes`` in :class:`LiveMetrics`
counts runs, not clients). A client never has a queue: it has *pending* upserts and deletes,
merged per row, and never holds more memory than the query's rows. A client that keeps up is
sent each update as soon as it is computed (the view's commits set the pace). A client that
falls behind — its last message took more than ``SLOW_SEND`` seconds to be handed to its
socket, or several updates piled up while it was being sent — is *slow*: for the next
``SLOW_HOLD`` seconds it receives coalesced updates at most ``max_rate`` times a second (10 by
default). A client may also ask for a fixed cap (``max_rate=`` on the route; the dashboard's
multiplexed connection uses the server's cap).

A new generation (rebuild) or definition sends ``reset`` and a new snapshot to every client.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec

from facta.server.live import LiveMessage
from facta.server.view_query import QueryResult, ViewQuery, run
from facta.server.view_service import ViewMark, ViewService
from facta.views.query import ViewNotFound, open_snapshot
from facta.views.store import ViewStore

_log = logging.getLogger("facta.server")
_encoder = msgspec.json.Encoder()

Key = tuple[Any, ...]
MAX_TOMBSTONES = 100_000
# A message that took longer than this to be handed to the socket marks its client slow...
SLOW_SEND = 0.05
# ...and a slow client is sent at most ``max_rate`` messages a second for this long.
SLOW_HOLD = 1.0


@dataclasses.dataclass(slots=True)
class LiveMetrics:
    """Counters of live view queries (in ``GET /log/stats`` under ``server.live_views``)."""

    computations_started: int = 0
    joined: int = 0  # subscriptions served by a computation that was already running
    recomputes: int = 0
    resets: int = 0
    subscribers: int = 0
    snapshots_sent: int = 0
    updates_sent: int = 0
    coalesced: int = 0
    slow: int = 0  # times a client was found slow (and rate-limited for SLOW_HOLD seconds)


class LiveClient:
    """One SSE connection's view of a live query: what it still has to be sent."""

    def __init__(self, query: LiveQuery) -> None:
        self.query = query
        self.upserts: dict[Key, dict[str, Any]] = {}
        self.deletes: set[Key] = set()
        self.position: int | None = None  # the position pending changes bring the client to
        self.sent = 0  # the last position sent (the SSE id)
        self.reset: str | None = None
        self.closed: str | None = None
        self.ready = asyncio.Event()
        self.merges = 0  # updates merged into what is pending now

    @property
    def idle(self) -> bool:
        return self.position is None and self.reset is None and self.closed is None

    def merge(self, position: int, upserts: dict[Key, dict[str, Any]], deletes: set[Key]) -> None:
        if self.position is not None:
            self.query.hub.metrics.coalesced += 1
        for key in deletes:
            self.upserts.pop(key, None)
            self.deletes.add(key)
        for key, row in upserts.items():
            self.deletes.discard(key)
            self.upserts[key] = row
        self.position = position
        self.merges += 1
        self.ready.set()

    def drop_pending(self) -> None:
        """Forget pending changes (a snapshot or a catch-up covers them)."""
        self.upserts, self.deletes, self.position = {}, set(), None
        self.merges = 0

    def start_over(self, reason: str) -> None:
        self.drop_pending()
        self.reset = reason
        self.ready.set()

    def close(self, reason: str) -> None:
        self.closed = reason
        self.ready.set()

    def take(self) -> tuple[int, list[dict[str, Any]], list[list[Any]]]:
        assert self.position is not None
        position, upserts, deletes = self.position, list(self.upserts.values()), self.deletes
        self.drop_pending()
        return position, upserts, [list(key) for key in deletes]


class LiveQuery:
    """The shared computation of one live query."""

    def __init__(self, hub: LiveViews, query: ViewQuery) -> None:
        self.hub = hub
        self.query = query
        self.clients: set[LiveClient] = set()
        self.result: QueryResult | None = None
        self.rows: dict[Key, dict[str, Any]] = {}
        self.stamps: dict[Key, int] = {}  # per row, the changed_at of its cells (if known)
        self.changed: dict[Key, int] = {}
        self.tombstones: dict[Key, int] = {}
        self.since = 0  # history (changed, tombstones) is complete for positions >= since
        self.mark: ViewMark | None = None
        self.wanted = asyncio.Event()
        self.ready = asyncio.Event()
        self.failure: BaseException | None = None
        self.task: asyncio.Task[None] | None = None
        self.expiry: asyncio.TimerHandle | None = None

    @property
    def position(self) -> int:
        return 0 if self.result is None else self.result.position

    async def run(self) -> None:
        """Compute, then recompute whenever the view moves, until cancelled."""
        try:
            await self._compute()
        except BaseException as exc:
            self.failure = exc
            self.ready.set()
            raise
        self.ready.set()
        while True:
            await self.wanted.wait()
            self.wanted.clear()
            try:
                await self._compute()
            except ViewNotFound:
                for client in tuple(self.clients):
                    client.close("dropped")
                return
            except Exception:
                _log.exception("live query %r failed to recompute; retrying", self.query)
                await asyncio.sleep(1.0)
                self.wanted.set()

    async def _compute(self) -> None:
        query = self.query
        mark = self.hub.views.marks.get(query.view)

        def work(store: ViewStore) -> QueryResult:
            return run(open_snapshot(store, query.view), query)

        result = await self.hub.views.readers.call(work)
        self.hub.metrics.recomputes += 1
        rows = {result.row_key(row): row for row in result.rows}
        stamps: dict[Key, int] = {}
        if result.changed_at is not None:
            pairs = zip(result.rows, result.changed_at, strict=True)
            stamps = {result.row_key(row): stamp for row, stamp in pairs}
        previous = self.result
        if previous is None:
            self._start(result, rows, stamps, mark)
            return
        if result.position < previous.position:
            return  # a slower read finished after a newer one: nothing to learn from it
        rebuilt = (
            mark is not None
            and self.mark is not None
            and (mark.generation, mark.created_at) != (self.mark.generation, self.mark.created_at)
        )
        if (
            rebuilt
            or result.definition_hash != previous.definition_hash
            or (result.key != previous.key or result.columns != previous.columns)
        ):
            self.hub.metrics.resets += 1
            self._start(result, rows, stamps, mark)
            for client in self.clients:
                client.start_over("rebuilt" if rebuilt else "definition_changed")
            return
        for key, stamp in stamps.items():
            # No cell of this row changed: keep the values every client already has.
            if key in self.rows and self.stamps.get(key) == stamp:
                rows[key] = self.rows[key]
        upserts = {key: row for key, row in rows.items() if self.rows.get(key) != row}
        deletes = {key for key in self.rows if key not in rows}
        position = result.position
        self.result, self.rows, self.mark = result, rows, mark or self.mark
        self.stamps = stamps
        for key in upserts:
            self.changed[key] = position
            self.tombstones.pop(key, None)
        for key in deletes:
            self.changed.pop(key, None)
            self.tombstones[key] = position
        if len(self.tombstones) > MAX_TOMBSTONES:
            # Forget the oldest deletes: resuming from before them is no longer possible.
            ordered = sorted(self.tombstones.items(), key=lambda item: item[1])
            cut = ordered[len(ordered) - MAX_TOMBSTONES // 2][1]
            self.tombstones = {k: p for k, p in self.tombstones.items() if p >= cut}
            self.since = max(self.since, cut)
        if upserts or deletes:
            for client in self.clients:
                client.merge(position, upserts, deletes)

    def _start(
        self,
        result: QueryResult,
        rows: dict[Key, dict[str, Any]],
        stamps: dict[Key, int],
        mark: Any,
    ) -> None:
        self.result, self.rows, self.mark, self.stamps = result, rows, mark, stamps
        self.changed = dict.fromkeys(rows, result.position)
        self.tombstones = {}
        self.since = result.position

    def catch_up(self, after: int) -> tuple[list[dict[str, Any]], list[list[Any]]] | None:
        """Everything that changed after ``after``, or None if history does not reach back."""
        if after < self.since or after > self.position:
            return None
        upserts = [row for key, row in self.rows.items() if self.changed.get(key, 0) > after]
        deletes = [
            list(key)
            for key, position in self.tombstones.items()
            if position > after and key not in self.rows
        ]
        return upserts, deletes


class LiveViews:
    """Every live query of the server, shared between identical queries."""

    def __init__(self, views: ViewService, *, grace: float = 30.0, max_rate: float = 10.0) -> None:
        self.views = views
        self.grace = grace
        self.interval = 1.0 / max_rate
        self.metrics = LiveMetrics()
        self.queries: dict[ViewQuery, LiveQuery] = {}
        views.listeners.append(self._moved)

    def stats(self) -> dict[str, Any]:
        return {"queries": len(self.queries), **dataclasses.asdict(self.metrics)}

    def _moved(self, view: str, mark: ViewMark | None) -> None:
        for live in self.queries.values():
            if live.query.view == view:
                live.wanted.set()

    async def attach(self, query: ViewQuery) -> tuple[LiveQuery, LiveClient]:
        """Join (or start) the computation of ``query``; raises what the first run raised."""
        live = self.queries.get(query)
        if live is None or (live.failure is not None):
            live = LiveQuery(self, query)
            self.queries[query] = live
            self.metrics.computations_started += 1
            live.task = asyncio.create_task(live.run(), name=f"facta-live-{query.view}")
        else:
            self.metrics.joined += 1
        if live.expiry is not None:
            live.expiry.cancel()
            live.expiry = None
        client = LiveClient(live)
        live.clients.add(client)
        self.metrics.subscribers += 1
        try:
            await live.ready.wait()
            if live.failure is not None:
                raise live.failure
        except BaseException:
            self.detach(client)
            raise
        return live, client

    def detach(self, client: LiveClient) -> None:
        live = client.query
        if client in live.clients:
            live.clients.discard(client)
            self.metrics.subscribers -= 1
        if not live.clients and self.queries.get(live.query) is live:
            # Keep the computation (and its history) a while, so a reconnect can resume.
            loop = asyncio.get_running_loop()
            delay = 0.0 if live.failure is not None else self.grace
            live.expiry = loop.call_later(delay, self._expire, live)

    def _expire(self, live: LiveQuery) -> None:
        if live.clients or self.queries.get(live.query) is not live:
            return
        del self.queries[live.query]
        if live.task is not None:
            live.task.cancel()

    async def stop(self) -> None:
        for live in list(self.queries.values()):
            for client in tuple(live.clients):
                client.close("closing")
            if live.task is not None:
                live.task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await live.task
        self.queries.clear()


class LiveViewStream:
    """The messages of one live query connection (a :class:`~facta.server.live.LiveSource`)."""

    def __init__(
        self,
        hub: LiveViews,
        live: LiveQuery,
        client: LiveClient,
        resume: int | None,
        part_rows: int = 2000,
        max_rate: float | None = None,
        slow_send: float = SLOW_SEND,
    ) -> None:
        self.hub = hub
        self.live = live
        self.client = client
        self.resume = resume
        self.part_rows = part_rows
        # A fixed cap on messages a second; None: uncapped while the client keeps up.
        self.fixed_interval = None if max_rate is None else 1.0 / max_rate
        self.slow_send = slow_send
        self._slow_until = 0.0

    def progress(self) -> int:
        if self.client.idle:
            # Nothing pending: the client's rows equal the query's at its current position.
            self.client.sent = max(self.client.sent, self.live.position)
        return self.client.sent

    async def batches(self) -> AsyncIterator[list[LiveMessage]]:
        try:
            async for batch in self._batches():
                yield batch
        finally:
            self.hub.detach(self.client)

    async def _batches(self) -> AsyncIterator[list[LiveMessage]]:
        live, client = self.live, self.client
        caught_up = None if self.resume is None else live.catch_up(self.resume)
        if caught_up is not None:
            upserts, deletes = caught_up
            client.drop_pending()
            yield self._update(live.position, upserts, deletes)
        else:
            if self.resume is not None:
                self.hub.metrics.resets += 1
                yield [LiveMessage("reset", _json({"reason": "cannot_resume"}))]
            yield self._snapshot()
        last = time.monotonic()
        while True:
            await client.ready.wait()
            client.ready.clear()
            if client.closed is not None:
                yield [LiveMessage("closing", _json({"reason": client.closed}))]
                return
            wait = last + self._interval() - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)  # coalesce: pending changes merge meanwhile
            if client.closed is not None:
                continue
            if client.reset is not None:
                reason, client.reset = client.reset, None
                batch = [LiveMessage("reset", _json({"reason": reason})), *self._snapshot()]
            elif client.position is not None:
                piled_up = client.merges > 1 and wait <= 0
                position, upserts, deletes = client.take()
                batch = self._update(position, upserts, deletes)
                if piled_up:
                    self._slowed()
            else:
                continue
            last = time.monotonic()
            yield batch
            if time.monotonic() - last > self.slow_send:
                self._slowed()

    def _interval(self) -> float:
        """The least time between two messages to this client now."""
        if self.fixed_interval is not None:
            return self.fixed_interval
        return self.hub.interval if time.monotonic() < self._slow_until else 0.0

    def _slowed(self) -> None:
        if time.monotonic() >= self._slow_until:
            self.hub.metrics.slow += 1
        self._slow_until = time.monotonic() + SLOW_HOLD

    def _snapshot(self) -> list[LiveMessage]:
        result = self.live.result
        assert result is not None
        self.client.drop_pending()
        self.client.reset = None
        rows = list(self.live.rows.values())
        parts = _split(rows, self.part_rows)
        self.hub.metrics.snapshots_sent += 1
        self.client.sent = result.position
        messages = []
        for index, chunk in enumerate(parts):
            last = index == len(parts) - 1
            body: dict[str, Any] = {
                "position": result.position,
                "definition_hash": result.definition_hash,
                "key": result.key,
                "columns": result.columns,
                "rows": chunk,
            }
            if len(parts) > 1:
                body["part"], body["parts"] = index + 1, len(parts)
            messages.append(LiveMessage("snapshot", _json(body), result.position if last else None))
        return messages

    def _update(
        self, position: int, upserts: list[dict[str, Any]], deletes: list[list[Any]]
    ) -> list[LiveMessage]:
        result = self.live.result
        assert result is not None
        parts = _split(upserts, self.part_rows)
        self.hub.metrics.updates_sent += 1
        self.client.sent = position
        messages = []
        for index, chunk in enumerate(parts):
            last = index == len(parts) - 1
            body: dict[str, Any] = {
                "position": position,
                "view_hash": result.definition_hash,
                "upsert": chunk,
                "delete": deletes if last else [],
            }
            if len(parts) > 1:
                body["part"], body["parts"] = index + 1, len(parts)
            messages.append(LiveMessage("update", _json(body), position if last else None))
        return messages


def _split(rows: list[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    if not rows:
        return [[]]
    return [rows[start : start + size] for start in range(0, len(rows), size)]


def _json(value: object) -> str:
    return _encoder.encode(value).decode()

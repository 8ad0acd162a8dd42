"""Active entities: cached state per stream, a bounded mailbox each, passivation.

An entry always holds the state *at* its version, and only ever moves forward one event
version at a time (:meth:`ActiveEntity.advance`), so concurrent catch-ups, commands and
transactions can never apply an event twice or skip one.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from facta.entities.decider import KindSpec
from facta.log.errors import Overloaded
from facta.log.group_commit import AppendTicket


@dataclasses.dataclass(frozen=True, slots=True)
class RuntimeConfig:
    """Settings of an entity runtime (times in seconds). The defaults are the documented ones.

    mailbox_size: commands that may wait for one entity before ``send`` waits for room.
    mailbox_timeout: how long ``send`` waits for room and for its turn, then ``Overloaded``.
    idle_after: an entity unused this long is passivated (dropped from memory).
    max_active: at most this many entities are kept in memory (least recently used go first).
    conflict_retries: how often a command reloads and decides again after a conflict.
    snapshot_every: a snapshot is written when this many events were added since the last one.
    settle_every: at most this often (after a transaction or command), the young generations
        of Python's cyclic garbage collector are collected and what survived is frozen out of
        its reach (``facta.collector.LiveSettler``), so no full collection walks every cached
        state in the middle of the work; None leaves the collector alone.
    """

    mailbox_size: int = 64
    mailbox_timeout: float = 10.0
    idle_after: float = 300.0
    max_active: int = 10_000
    conflict_retries: int = 20
    snapshot_every: int = 100
    settle_every: float | None = 0.25


@dataclasses.dataclass(slots=True, eq=False)
class InFlight:
    """A transaction's append that writes an entity, in flight: what the entity becomes if the
    append is written (``ticket`` names the append to the log)."""

    ticket: AppendTicket
    version: int
    state: Any


@dataclasses.dataclass(slots=True, eq=False)
class ActiveEntity:
    spec: KindSpec
    stream: str
    state: Any
    version: int
    last_used: float
    snapshot_version: int = 0
    activated: bool = False
    lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)
    waiting: int = 0
    room: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    committing: int = 0  # appends that write this entity, in flight in this process
    # Transactions' appends in flight that form one chain, each decided on the one before: the
    # last of them, and how many there are. A transaction reads the tip when every append in
    # flight is in the chain, and its append depends on the tip's (the log refuses it unless
    # the tip was written first), instead of waiting for the chain to be committed.
    tip: InFlight | None = None
    chained: int = 0
    sends_waiting: int = 0  # commands waiting for the appends in flight to settle
    _settle_waiters: list[asyncio.Future[None]] | None = None

    def readable(self) -> tuple[Any, int, InFlight | None] | None:
        """``(state, version, tip)`` a transaction may decide on now without waiting: the
        committed state, or the tip of the chain in flight (``tip`` is None for the committed
        state). None while another kind of append (a command's) is in flight: wait for it to
        settle first."""
        if not self.committing:
            return self.state, self.version, None
        tip = self.tip
        if tip is not None and self.committing == self.chained and not self.sends_waiting:
            return tip.state, tip.version, tip
        return None  # wait: a command's append is in flight, or a command waits for its turn

    def chain_started(self, in_flight: InFlight) -> None:
        self.committing += 1
        self.chained += 1
        self.tip = in_flight

    def chain_ended(self, in_flight: InFlight, written: bool) -> None:
        """A chained append returned. One that was not written dooms the appends chained after
        it (the log refuses them), so the chain is no longer readable until it drains."""
        self.chained -= 1
        if not written or self.tip is in_flight:
            self.tip = None
        self.commit_ended()

    def commit_started(self) -> None:
        self.committing += 1

    def commit_ended(self) -> None:
        self.committing -= 1
        if self.committing == 0 and self._settle_waiters:
            waiters, self._settle_waiters = self._settle_waiters, None
            for waiter in waiters:
                if not waiter.done():  # a cancelled waiter's future is done
                    waiter.set_result(None)

    async def settled(self, timeout: float) -> None:
        """Wait (bounded) until no append that writes this entity is in flight in this process.

        Reading after in-flight commits settle avoids deciding on a version that is about to
        be superseded; it holds nothing, so it cannot deadlock. Each wait ends when the
        appends in flight end (they are bounded by the log's append timeout); new ones may
        start meanwhile, so after ``timeout`` seconds it returns anyway.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.committing and loop.time() < deadline:
            waiter: asyncio.Future[None] = loop.create_future()
            if self._settle_waiters is None:
                self._settle_waiters = []
            self._settle_waiters.append(waiter)
            await waiter

    def advance(self, events: Iterable[tuple[int, Any]]) -> None:
        """Apply ``(version, event)`` pairs that directly follow the current version."""
        for version, event in events:
            if version == self.version + 1:
                self.state = self.spec.evolve(self.state, event)
                self.version = version

    def committed(self, read_version: int, read_state: Any, staged: list[Any], state: Any) -> None:
        """Move forward by a commit of ``staged``, decided on ``(read_version, read_state)``.

        ``state`` is what the events made of ``read_state`` (the committer evolved them
        already); it is taken as is only while this entry still holds that very state at that
        version, otherwise the events are applied one by one where they follow.
        """
        if self.version != read_version:
            return
        if self.state is read_state:
            self.state, self.version = state, read_version + len(staged)
        else:
            first = read_version + 1
            self.advance(zip(range(first, first + len(staged)), staged, strict=True))

    def busy(self) -> bool:
        return self.lock.locked() or self.waiting > 0 or self.committing > 0

    async def enter(self, timeout: float, limit: int, monotonic: Callable[[], float]) -> None:
        """Join the mailbox (waiting for room) and wait for this entity's turn.

        Raises ``Overloaded`` if room or the turn does not come within ``timeout`` seconds.
        """
        deadline = monotonic() + timeout
        while self.waiting >= limit:
            self.room.clear()
            remaining = deadline - monotonic()
            try:
                await asyncio.wait_for(self.room.wait(), max(0.0, remaining))
            except TimeoutError:
                raise Overloaded(
                    f"entity {self.stream!r}: mailbox stayed full ({limit} commands waiting) "
                    f"for {timeout}s"
                ) from None
        self.waiting += 1
        try:
            await asyncio.wait_for(self.lock.acquire(), max(0.0, deadline - monotonic()))
        except TimeoutError:
            raise Overloaded(
                f"entity {self.stream!r}: no turn within {timeout}s "
                f"({self.waiting} commands waiting)"
            ) from None
        finally:
            self.waiting -= 1
            self.room.set()


class EntityCache:
    """Entries by stream, least recently used first; passivates idle and surplus entries."""

    def __init__(self, config: RuntimeConfig, monotonic: Callable[[], float]) -> None:
        self.config = config
        self.monotonic = monotonic
        self.entries: OrderedDict[str, ActiveEntity] = OrderedDict()
        self.passivated = 0
        self._last_sweep = monotonic()

    def get(self, spec: KindSpec, stream: str) -> ActiveEntity:
        now = self.monotonic()
        entry = self.entries.get(stream)
        if entry is None:
            entry = ActiveEntity(spec, stream, spec.make_initial(), 0, now)
            self.entries[stream] = entry
            self._trim(now)
            if now - self._last_sweep > self.config.idle_after / 4:
                self.passivate_idle(now)
        else:
            self.touch(entry)
        return entry

    def peek(self, stream: str) -> ActiveEntity | None:
        return self.entries.get(stream)

    def touch(self, entry: ActiveEntity) -> None:
        """Mark a cached entry as just used (what :meth:`get` does for an entry it finds)."""
        now = self.monotonic()
        self.entries.move_to_end(entry.stream)
        entry.last_used = now
        if now - self._last_sweep > self.config.idle_after / 4:
            self.passivate_idle(now)

    def passivate_idle(self, now: float | None = None) -> int:
        """Drop entries idle for ``idle_after`` seconds; returns how many were dropped."""
        now = self.monotonic() if now is None else now
        self._last_sweep = now
        dropped = 0
        for stream, entry in list(self.entries.items()):
            if now - entry.last_used < self.config.idle_after:
                break  # ordered by last use: the rest are younger
            if not entry.busy():
                del self.entries[stream]
                dropped += 1
        self.passivated += dropped
        return dropped

    def _trim(self, now: float) -> None:
        surplus = len(self.entries) - self.config.max_active
        if surplus <= 0:
            return
        newest = next(reversed(self.entries))
        for stream, entry in list(self.entries.items()):
            if surplus <= 0:
                break
            if stream != newest and not entry.busy():
                del self.entries[stream]
                self.passivated += 1
                surplus -= 1

    def forget(self, stream: str) -> None:
        self.entries.pop(stream, None)

    def __len__(self) -> int:
        return len(self.entries)

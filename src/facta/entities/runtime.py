"""The entity runtime: virtual actors over the log, one command at a time per entity.

``runtime.entity(Account, "a").send(Withdraw(10), command_id="c-1")`` activates the entity
(snapshot plus the rest of its stream), waits for its turn in a bounded mailbox, looks up the
command id among the log's outcomes (a recorded outcome is returned and nothing runs), decides,
and appends the events together with the outcome in one atomic append that expects the version
the decision was made on. Another process appending first makes that append fail; the entity
then catches up and decides again, a bounded number of times.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from facta.collector import LiveSettler
from facta.entities.cache import ActiveEntity, EntityCache, RuntimeConfig
from facta.entities.decider import KindSpec, spec_of
from facta.entities.errors import (
    AlreadyApplied,
    CommandInFlight,
    ConcurrencyConflict,
    DomainError,
    ReentrantSend,
    TransactionConflict,
)
from facta.entities.lookups import OutcomeLookups
from facta.entities.outcome import (
    ACCEPTED,
    Accepted,
    Committed,
    accepted_from,
    committed_from,
    is_refusal,
    refusal,
    replay_refusal,
)
from facta.entities.snapshots import SnapshotStore
from facta.entities.transaction import StaleRead, Transaction, causality
from facta.log import AppendTicket
from facta.log.errors import IdempotencyKeyReused, WrongExpectedVersion
from facta.log.event import AppendResult, OutcomeRecord, StreamAppend
from facta.log.sqlite import SqliteLog

T = TypeVar("T")
# Snapshots taken within this many seconds are written together, in one transaction.
SNAPSHOT_GATHER_SECONDS = 0.5
# Past this many abandoned appends remembered, the answered ones are forgotten.
ABANDONED_SWEEP_AT = 1024

_holding: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar(
    "facta_entities_holding", default=frozenset()
)


@dataclasses.dataclass(slots=True)
class RuntimeStats:
    """Counters of one runtime, for tests, benchmarks and the CLI."""

    commands: int = 0
    replays: int = 0
    refusals: int = 0
    conflict_retries: int = 0
    transactions: int = 0
    transaction_conflicts: int = 0
    transaction_aborts: int = 0
    stale_reads: int = 0  # conflicts found in this process's cache, before appending
    chained_appends: int = 0  # transactions appended behind another's append still in flight


class Runtime:
    """Entities and transactions over one log. Use it from one asyncio event loop.

    ``config`` sets mailbox size and timeout, passivation, retries and snapshot interval (see
    :class:`RuntimeConfig` for the documented defaults). ``monotonic`` is the clock for idling
    (a :class:`facta.testing.FakeClock` in tests).
    """

    transaction_class: type[Transaction] = Transaction

    def __init__(
        self,
        log: SqliteLog,
        config: RuntimeConfig | None = None,
        *,
        monotonic: Callable[[], float] | None = None,
        snapshots: bool = True,
    ) -> None:
        self.log = log
        self.config = config or RuntimeConfig()
        self.monotonic = monotonic or time.monotonic
        self.cache = EntityCache(self.config, self.monotonic)
        self.snapshots = SnapshotStore(log.path) if snapshots and log.path != ":memory:" else None
        self.stats = RuntimeStats()
        # Appends of commands whose callers gave up while they were in flight, by command id.
        self.abandoned_appends: dict[str, AppendTicket] = {}
        self._settler = LiveSettler()
        self._settled_at = time.monotonic()
        self._background: set[asyncio.Task[Any]] = set()
        # Snapshots taken and not yet written, and the timer that writes them together.
        self._snapshots_due: list[tuple[KindSpec, str, int, Any]] = []
        self._snapshot_timer: asyncio.TimerHandle | None = None
        self._active = 0  # commands and transactions in progress
        self.lookups = OutcomeLookups(log)

    # -- public API -----------------------------------------------------------------------------

    def entity(self, kind: Any, entity_id: str) -> EntityRef:
        """A handle on one entity of ``kind``; cheap, activate-on-use."""
        return EntityRef(self, spec_of(kind), entity_id)

    async def transact(
        self,
        fn: Callable[[Transaction], Awaitable[T]],
        *,
        command_id: str | None = None,
        timeout: float | None = None,
        retries: int = 10,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> Committed:
        """Run ``fn(tx)`` and commit every participant's events in one append, or none.

        On a conflict ``fn`` runs again from scratch, at most ``retries`` times, with jittered
        backoff; then :class:`TransactionConflict`. A domain error, a timeout (``timeout``
        seconds for ``fn``) or a cancellation aborts with nothing written.
        """
        self._active += 1
        try:
            if command_id is not None:
                recorded = await self._outcome_before(command_id)
                if recorded is not None:
                    return committed_from(recorded.result, command_id, replayed=True)
            last: WrongExpectedVersion | None = None
            for attempt in range(1, retries + 1):
                tx = self.transaction_class(self, command_id, correlation_id, causation_id)
                try:
                    if timeout is None:
                        value = await fn(tx)
                    else:
                        async with asyncio.timeout(timeout):
                            value = await fn(tx)
                except BaseException as error:
                    applied = await self._aborted(error, command_id)
                    if applied is not None:
                        return applied
                    raise
                try:
                    result = await tx.commit(self._log_key(command_id), ACCEPTED)
                except WrongExpectedVersion as conflict:
                    last = conflict
                    if not await self._after_conflict(tx, conflict):
                        await asyncio.sleep(random.uniform(0, min(0.05, 0.001 * 2**attempt)))
                    continue
                except IdempotencyKeyReused:
                    return await self._replayed_commit(command_id)
                self.stats.transactions += 1
                return committed_from(result, command_id, replayed=result.replayed, value=value)
            assert last is not None
            raise TransactionConflict(retries, last.stream, str(last))
        finally:
            self._active -= 1
            self._settle_collector()

    async def _after_conflict(self, tx: Transaction, conflict: WrongExpectedVersion) -> bool:
        """Count a commit's conflict and reload the participants, unless it was a stale read:
        a commit of this process moved a participant and the cache already holds it, so there
        is nothing to reload and no one to wait for (then True: run again at once)."""
        self.stats.transaction_conflicts += 1
        if isinstance(conflict, StaleRead):
            self.stats.stale_reads += 1
            return True
        await tx.refresh()
        return False

    async def _aborted(self, error: BaseException, command_id: str | None) -> Committed | None:
        """Count a transaction body that raised ``error``; for a domain error, the outcome of
        ``command_id`` if another process applied it meanwhile (``_applied_meanwhile``)."""
        self.stats.transaction_aborts += 1
        if not isinstance(error, DomainError):
            return None
        return await self._applied_meanwhile(command_id)

    async def _applied_meanwhile(self, command_id: str | None) -> Committed | None:
        """The outcome of ``command_id`` if it was recorded after this attempt looked it up.

        A transaction's refusal is not recorded (nothing is written), so nothing makes it
        conflict with another process applying the same command id at the same moment: this
        attempt may have decided on the state that one left, and refused. The command was
        applied; its outcome is the answer, not the refusal.
        """
        if command_id is None:
            return None
        recorded = await self._recorded(command_id)
        if recorded is None:
            return None
        return committed_from(recorded.result, command_id, replayed=True)

    @contextlib.asynccontextmanager
    async def transaction(
        self,
        *,
        command_id: str | None = None,
        timeout: float | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> AsyncIterator[Transaction]:
        """``async with runtime.transaction() as tx:`` runs its body once, then commits.

        Raises :class:`TransactionConflict` if a read was invalidated, and
        :class:`AlreadyApplied` if ``command_id`` is already recorded: before the body runs, or
        instead of the body's domain error if another process recorded it meanwhile.
        ``tx.result`` holds the :class:`Committed` afterwards.
        """
        if command_id is not None:
            recorded = await self._outcome_before(command_id)
            if recorded is not None:
                raise AlreadyApplied(
                    command_id, committed_from(recorded.result, command_id, replayed=True)
                )
        tx = self.transaction_class(self, command_id, correlation_id, causation_id)
        try:
            async with asyncio.timeout(timeout):
                yield tx
        except BaseException as error:
            applied = await self._aborted(error, command_id)
            if applied is not None and command_id is not None:
                raise AlreadyApplied(command_id, applied) from error
            raise
        try:
            result = await tx.commit(self._log_key(command_id), ACCEPTED)
        except WrongExpectedVersion as conflict:
            await self._after_conflict(tx, conflict)
            raise TransactionConflict(1, conflict.stream, str(conflict)) from conflict
        except IdempotencyKeyReused:
            tx.result = await self._replayed_commit(command_id)
            return
        self.stats.transactions += 1
        tx.result = committed_from(result, command_id, replayed=result.replayed)

    async def flush(self) -> None:
        """Write the snapshots due now and wait for background snapshot writes."""
        if self._snapshot_timer is not None:
            self._snapshot_timer.cancel()
        self._write_snapshots()
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    def passivate_idle(self) -> int:
        return self.cache.passivate_idle()

    async def aclose(self) -> None:
        await self.flush()
        if self.snapshots is not None:
            self.snapshots.close()

    # -- activation -----------------------------------------------------------------------------

    async def activate(self, spec: KindSpec, stream: str) -> ActiveEntity:
        entry = self.cache.get(spec, stream)
        if not entry.activated:
            await self.catch_up(entry)
        return entry

    async def catch_up(self, entry: ActiveEntity) -> None:
        """Bring a cached entry up to the log: snapshot first (on activation), then events."""
        if not entry.activated and entry.version == 0 and self.snapshots is not None:
            snapshot = await asyncio.to_thread(self.snapshots.load, entry.spec, entry.stream)
            if snapshot is not None and entry.version == 0:
                entry.state = snapshot.state
                entry.version = entry.snapshot_version = snapshot.version
        while True:
            start = entry.version
            events = await self.log.read_stream(entry.stream, from_version=start + 1)
            if entry.version != start and events and events[0].version != entry.version + 1:
                continue  # moved while reading: read again from where it is now
            entry.advance((e.version, entry.spec.from_recorded(e)) for e in events)
            entry.activated = True
            return

    def maybe_snapshot(self, entry: ActiveEntity) -> None:
        """Take a snapshot of ``entry`` if it is due; it is written with the others taken in
        the next ``SNAPSHOT_GATHER_SECONDS``, in one write transaction in a worker thread.

        One write per snapshot (a thread hop and a commit each, about 2,000 in a
        100,000-transfer bench run) cost the transfers 6-13 µs of CPU each: every commit
        of another connection also makes the log's writer read its streams' versions anew.
        """
        if self.snapshots is None:
            return
        if entry.version - entry.snapshot_version < self.config.snapshot_every:
            return
        entry.snapshot_version = entry.version
        self._snapshots_due.append((entry.spec, entry.stream, entry.version, entry.state))
        if self._snapshot_timer is None:
            self._snapshot_timer = asyncio.get_running_loop().call_later(
                SNAPSHOT_GATHER_SECONDS, self._write_snapshots
            )

    def _write_snapshots(self) -> None:
        """Write the snapshots due, in a worker thread (flush waits for it)."""
        self._snapshot_timer = None
        due, self._snapshots_due = self._snapshots_due, []
        if not due or self.snapshots is None:
            return
        task = asyncio.get_running_loop().create_task(
            asyncio.to_thread(self.snapshots.save_many, due)
        )
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- idempotency hooks (tests break them on purpose) ----------------------------------------

    def _settle_collector(self) -> None:
        """Every ``config.settle_every`` seconds at most, after a piece of work: collect the
        young objects and freeze the survivors (cached states, mostly), so the collector's full
        walks, pauses of 10-40 ms with a thousand entities cached, stay off the work's path
        (measured on ``facta bench entities``' transfers: p99 31 ms without, about 20 with)."""
        every = self.config.settle_every
        if every is None:
            return
        now = time.monotonic()
        if now - self._settled_at >= every:
            self._settled_at = now
            self._settler.settle()

    def remember_abandoned(self, command_id: str, ticket: AppendTicket) -> None:
        """Note an append its caller stopped waiting for while it was in flight (see
        :meth:`_after_abandoned`); answered ones are forgotten once there are many."""
        abandoned = self.abandoned_appends
        if len(abandoned) >= ABANDONED_SWEEP_AT:
            for key in [k for k, t in abandoned.items() if not t.in_flight()]:
                del abandoned[key]
        abandoned[command_id] = ticket

    def _outcome_before(self, command_id: str) -> Awaitable[OutcomeRecord | None]:
        """The recorded outcome of ``command_id`` (None if none), read before deciding, after
        an abandoned earlier attempt's answer if there is one (no extra coroutine if not)."""
        if not self.abandoned_appends:
            return self._recorded(command_id)
        return self._recorded_after_abandoned(command_id)

    async def _recorded_after_abandoned(self, command_id: str) -> OutcomeRecord | None:
        await self._after_abandoned(command_id)
        return await self._recorded(command_id)

    async def _after_abandoned(self, command_id: str) -> None:
        """Wait for the append of an earlier attempt of this command that its caller gave up on
        (a timeout, a cancellation) while it was in flight, so the outcome lookup that follows
        sees it if it was written. Without this, a retry could decide again on the state that
        append leaves, and report a refusal (a domain error, which a transaction does not
        record) for a command that was in fact applied."""
        ticket = self.abandoned_appends.get(command_id)
        if ticket is None:
            return
        wait = self.log.config.append_timeout
        if not await ticket.wait_answered(wait):
            raise CommandInFlight(command_id, wait)
        if self.abandoned_appends.get(command_id) is ticket:
            del self.abandoned_appends[command_id]

    async def _recorded(self, command_id: str) -> OutcomeRecord | None:
        if self._active <= 1:  # nothing else to stall: a point read inline is cheapest
            return self.log.lookup_sync(command_id)
        # Otherwise read with the other lookups asked in this turn of the loop, in one statement.
        return await self.lookups.lookup(command_id)

    def _log_key(self, command_id: str | None) -> str | None:
        return command_id

    async def _replayed_commit(self, command_id: str | None) -> Committed:
        assert command_id is not None
        recorded = await self.log.lookup(command_id)
        assert recorded is not None, f"command id {command_id!r} reused but not recorded"
        return committed_from(recorded.result, command_id, replayed=True)

    # -- one command ----------------------------------------------------------------------------

    async def send(
        self,
        spec: KindSpec,
        entity_id: str,
        command: Any,
        *,
        command_id: str | None = None,
        timeout: float | None = None,
        causation_id: str | None = None,
        correlation_id: str | None = None,
    ) -> Accepted:
        self._active += 1
        try:
            return await self._send(
                spec, entity_id, command, command_id, timeout, causation_id, correlation_id
            )
        finally:
            self._active -= 1

    async def _send(
        self,
        spec: KindSpec,
        entity_id: str,
        command: Any,
        command_id: str | None,
        timeout: float | None,
        causation_id: str | None,
        correlation_id: str | None,
    ) -> Accepted:
        stream = spec.stream(entity_id)
        if command_id is not None:
            recorded = await self._recorded(command_id)
            if recorded is not None:
                return self._replay(recorded, command_id, stream)
        held = _holding.get()
        if stream in held:
            raise ReentrantSend(stream)
        entry = self.cache.get(spec, stream)
        limit = timeout if timeout is not None else self.config.mailbox_timeout
        await entry.enter(limit, self.config.mailbox_size, self.monotonic)
        token = _holding.set(held | {stream})
        try:
            if not entry.activated:
                await self.catch_up(entry)
            self.stats.commands += 1
            return await self._decide_and_append(
                entry, command, command_id, causation_id, correlation_id
            )
        finally:
            _holding.reset(token)
            entry.lock.release()
            self._settle_collector()

    async def _decide_and_append(
        self,
        entry: ActiveEntity,
        command: Any,
        command_id: str | None,
        causation_id: str | None,
        correlation_id: str | None,
    ) -> Accepted:
        spec, stream = entry.spec, entry.stream
        key = self._log_key(command_id)
        metadata = causality(command_id, causation_id, correlation_id)
        version = entry.version
        for _attempt in range(self.config.conflict_retries):
            if entry.committing:
                # Transactions' appends in flight would make a decision now stale; while this
                # command waits, new transactions wait too instead of chaining on them.
                entry.sends_waiting += 1
                try:
                    await entry.settled(self.config.mailbox_timeout)
                finally:
                    entry.sends_waiting -= 1
            version, state = entry.version, entry.state
            refused: DomainError | None = None
            decided: list[Any] = []
            try:
                decided = spec.run_decide(command, state)
            except DomainError as error:
                self.stats.refusals += 1
                if key is None:
                    raise
                refused = error
                outcome: Any = refusal(error)
                entries = [StreamAppend(stream, (), version)]
            else:
                if not decided and key is None:
                    return Accepted(command_id, stream, version, None, None)
                events = tuple(spec.to_new_event(e, metadata) for e in decided)
                outcome = ACCEPTED if key is not None else None
                entries = [StreamAppend(stream, events, version)]
            entry.commit_started()  # transactions read after it settles
            try:
                result = await self.log.append_many(entries, key=key, outcome=outcome)
            except WrongExpectedVersion:
                self.stats.conflict_retries += 1
                await self.catch_up(entry)
                continue
            except IdempotencyKeyReused:
                assert command_id is not None
                recorded = await self.log.lookup(command_id)
                assert recorded is not None
                return self._replay(recorded, command_id, stream)
            finally:
                entry.commit_ended()
            if result.replayed:
                return self._replay(result, command_id, stream)
            if refused is not None:
                raise refused
            if entry.version == version:
                entry.advance(
                    zip(range(version + 1, version + 1 + len(decided)), decided, strict=True)
                )
            else:
                await self.catch_up(entry)
            self.maybe_snapshot(entry)
            return accepted_from(result, command_id, stream)
        raise ConcurrencyConflict(
            stream, self.config.conflict_retries, version, await self.log.stream_version(stream)
        )

    def _replay(
        self, record: OutcomeRecord | AppendResult, command_id: str | None, stream: str
    ) -> Accepted:
        self.stats.replays += 1
        if is_refusal(record.outcome):
            raise replay_refusal(record.outcome)
        return accepted_from(record, command_id, stream)


class EntityRef:
    """One entity: ``await ref.send(command, command_id=...)``, ``await ref.state()``."""

    def __init__(self, runtime: Runtime, spec: KindSpec, entity_id: str) -> None:
        self.runtime = runtime
        self.spec = spec
        self.id = entity_id
        self.stream = spec.stream(entity_id)

    async def send(
        self,
        command: Any,
        *,
        command_id: str | None = None,
        timeout: float | None = None,
        causation_id: str | None = None,
        correlation_id: str | None = None,
    ) -> Accepted:
        """Decide ``command`` and append its events; raises the decider's ``DomainError``."""
        return await self.runtime.send(
            self.spec,
            self.id,
            command,
            command_id=command_id,
            timeout=timeout,
            causation_id=causation_id,
            correlation_id=correlation_id,
        )

    async def state(self) -> Any:
        """The entity's state as of the log now (caught up, not just cached)."""
        entry = await self.runtime.activate(self.spec, self.stream)
        await self.runtime.catch_up(entry)
        return entry.state

    async def version(self) -> int:
        entry = await self.runtime.activate(self.spec, self.stream)
        await self.runtime.catch_up(entry)
        return entry.version

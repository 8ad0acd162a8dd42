"""Transactions across entities: stage commands locally, commit everything in one append.

A transaction reads each participant's cached state (no mailbox, no lock: nothing is held
across an ``await``), runs commands against a private copy, and commits one multi-stream
append in which **every** participant — written or only read — carries an exact expectation
at the version it was read at. So a commit fails if anything it read has changed, which makes
commands and transactions on one log strictly serializable, ordered by commit position.
Staged events reach the shared cache only after the append commits.
"""

from __future__ import annotations

from collections.abc import Coroutine, Set
from typing import TYPE_CHECKING, Any

from facta.entities.cache import ActiveEntity, InFlight
from facta.entities.decider import KindSpec, spec_of
from facta.entities.outcome import Committed
from facta.log.errors import WrongExpectedVersion
from facta.log.event import AppendResult, NewEvent, StreamAppend, Tracking
from facta.log.group_commit import AppendTicket
from facta.log.ids import uuid7

if TYPE_CHECKING:
    from facta.entities.runtime import Runtime


class StaleRead(WrongExpectedVersion):
    """A commit of this process moved a participant after the transaction read it.

    Raised before appending, since the log would refuse the append: the cached entry is
    already past the version read (it only ever moves forward by committed events).
    """


class Participant:
    """One entity in a transaction: what it read, and the events it staged since."""

    __slots__ = (
        "entry",
        "metadata",
        "read_state",
        "read_tip",
        "read_version",
        "spec",
        "staged",
        "state",
        "stream",
    )

    def __init__(
        self,
        spec: KindSpec,
        stream: str,
        state: Any,
        read_version: int,
        entry: ActiveEntity | None = None,
        read_tip: InFlight | None = None,
    ) -> None:
        self.spec = spec
        self.stream = stream
        self.state = state  # with the staged events applied
        self.read_state = state
        self.read_version = read_version
        self.staged: list[Any] = []
        self.metadata: list[dict[str, Any]] = []
        self.entry = entry  # the cached entity it was read from
        self.read_tip = read_tip  # the in-flight append it was read from, if not committed state


def causality(
    command_id: str | None, causation_id: str | None, correlation_id: str | None
) -> dict[str, Any]:
    """Metadata every event of a command carries: what caused it and the root of its chain."""
    command = command_id or str(uuid7())
    return {
        "command_id": command,
        "causation_id": causation_id or command,
        "correlation_id": correlation_id or causation_id or command,
    }


class Transaction:
    """What ``fn(tx)`` receives: ``tx.entity(Kind, id)`` returns a transactional handle."""

    def __init__(
        self,
        runtime: Runtime,
        command_id: str | None,
        correlation_id: str | None,
        causation_id: str | None,
    ) -> None:
        self.runtime = runtime
        self.command_id = command_id
        self.metadata = causality(command_id, causation_id, correlation_id)
        self.participants: dict[str, Participant] = {}
        self.emitted: dict[str, list[NewEvent]] = {}
        self.result: Committed | None = None

    def entity(self, kind: Any, entity_id: str) -> TxEntity:
        return TxEntity(self, spec_of(kind), entity_id)

    def _ready(self, spec: KindSpec, entity_id: str) -> Participant | None:
        """The participant, if it can be had without waiting: read already, or cached,
        activated and readable now (the usual case); else None (see :meth:`participant`)."""
        stream = f"{spec.name}-{entity_id}"
        found = self.participants.get(stream)
        if found is not None:
            return found
        runtime = self.runtime
        entry = runtime.cache.peek(stream)
        if entry is None or not entry.activated:
            return None
        readable = entry.readable()
        if readable is None:
            return None
        runtime.cache.touch(entry)
        state, version, tip = readable
        found = Participant(spec, stream, state, version, entry=entry, read_tip=tip)
        self.participants[stream] = found
        return found

    async def participant(self, spec: KindSpec, entity_id: str) -> Participant:
        found = self._ready(spec, entity_id)
        if found is not None:
            return found
        stream = f"{spec.name}-{entity_id}"
        runtime = self.runtime
        entry = runtime.cache.peek(stream)
        if entry is None:
            stream = spec.stream(entity_id)  # checks the name before the first activation
        if entry is None or not entry.activated:
            entry = await runtime.activate(spec, stream)
        else:
            runtime.cache.touch(entry)
        readable = entry.readable()
        if readable is None:
            await entry.settled(runtime.config.mailbox_timeout)
            readable = entry.readable() or (entry.state, entry.version, None)
        found = self.participants.get(stream)  # another task of this tx may have won
        if found is None:
            state, version, tip = readable
            found = Participant(spec, stream, state, version, entry=entry, read_tip=tip)
            self.participants[stream] = found
        return found

    async def send(
        self,
        spec: KindSpec,
        entity_id: str,
        command: Any,
        metadata: dict[str, Any] | None = None,
    ) -> list[Any]:
        """Decide ``command`` on the participant's staged state; a DomainError propagates."""
        p = self._ready(spec, entity_id) or await self.participant(spec, entity_id)
        decided = spec.run_decide(command, p.state)
        if decided:
            evolve, state = spec.evolve, p.state
            for event in decided:
                state = evolve(state, event)
            p.state = state
            p.staged.extend(decided)
            p.metadata.extend([metadata or self.metadata] * len(decided))
        self.staged(p, decided)
        return decided

    def staged(self, participant: Participant, events: list[Any]) -> None:
        """Called after a command's events were staged (a hook for deliberately broken tests)."""

    def entries(self) -> list[StreamAppend]:
        out = []
        for p in self.participants.values():
            to_new_event = p.spec.to_new_event
            events = tuple([to_new_event(e, m) for e, m in zip(p.staged, p.metadata, strict=True)])
            out.append(StreamAppend(p.stream, events, p.read_version))
        return out

    async def commit(
        self, key: str | None, outcome: Any, tracking: Tracking | None = None
    ) -> AppendResult:
        """Append every participant (read checks for the read-only ones) in one append.

        Participants read from appends still in flight make this append depend on them; the
        entities it writes get it as their new tip while it is in flight.
        """
        if self._first_unreadable() is not None:
            await self._check_reads()
        entries = self.entries()
        if self.emitted:
            entries += [StreamAppend(s, tuple(events)) for s, events in self.emitted.items()]
        if not entries and key is None and tracking is None:
            return AppendResult(None, None, ())
        after = [p.read_tip.ticket for p in self.participants.values() if p.read_tip is not None]
        if after:
            self.runtime.stats.chained_appends += 1
        ticket = AppendTicket()
        writing = [
            (p.entry, InFlight(ticket, p.read_version + len(p.staged), p.state))
            for p in self.participants.values()
            if p.staged and p.entry is not None
        ]
        for entry, in_flight in writing:
            entry.chain_started(in_flight)
        written = False
        try:
            result = await self.runtime.log.append_many(
                entries,
                key=key,
                outcome=outcome if key is not None else None,
                tracking=tracking,
                ticket=ticket,
                after=after,
            )
            if not result.replayed:
                written = True
                self.apply_committed()
        finally:
            for entry, in_flight in writing:
                entry.chain_ended(in_flight, written)
            if key is not None and ticket.in_flight():
                # Given up on (cancelled, timed out) while the append goes on: a retry of the
                # same command in this process waits for its answer before deciding.
                self.runtime.remember_abandoned(key, ticket)
        return result

    def _first_unreadable(self, skip: Set[ActiveEntity] = frozenset()) -> ActiveEntity | None:
        """The first participant's entry that cannot be read now (a command's append in
        flight; not one in ``skip``), after checking that those before it were not moved
        since they were read (:class:`StaleRead`); None if every one is readable and unmoved,
        the usual case, found without an ``await``."""
        for p in self.participants.values():
            entry = p.entry
            if entry is None or entry in skip:
                continue
            readable = entry.readable()
            if readable is None:
                return entry
            _, version, tip = readable
            if version != p.read_version or (tip is not None and tip is not p.read_tip):
                raise StaleRead(p.stream, p.read_version, version)
        return None

    async def _check_reads(self) -> None:
        """Fail fast (:class:`StaleRead`) if an append of this process moved a participant
        since it was read: what it reads now is not the state or the chain tip it read.

        Appending would only learn the same from the log, one commit later. A participant with
        a command's append in flight is waited for first; after a wait every participant is
        checked again, so the last pass runs with no ``await`` up to the append.
        """
        timeout = self.runtime.config.mailbox_timeout
        for _pass in range(len(self.participants) + 1):
            busy: set[ActiveEntity] = set()  # waited for in this pass, busy still
            while (entry := self._first_unreadable(busy)) is not None:
                await entry.settled(timeout)
                if entry.readable() is not None:
                    break  # check every participant again
                busy.add(entry)  # the log decides for it
            else:
                return

    def apply_committed(self) -> None:
        """Move the shared cache forward by the staged events, where it still is at the read."""
        runtime = self.runtime
        for p in self.participants.values():
            entry = p.entry
            if p.staged and entry is not None and entry.version == p.read_version:
                entry.committed(p.read_version, p.read_state, p.staged, p.state)
                runtime.maybe_snapshot(entry)

    async def refresh(self) -> None:
        """After a conflict: catch every participant's cached entry up with the log."""
        for p in self.participants.values():
            entry = self.runtime.cache.peek(p.stream)
            if entry is not None:
                await self.runtime.catch_up(entry)

    def emit(self, stream: str, events: list[NewEvent]) -> None:
        """Append plain events to ``stream`` (no expectation) as part of this transaction.

        ``stream`` must not be the stream of an entity in the transaction.
        """
        self.emitted.setdefault(stream, []).extend(events)


class TxEntity:
    """An entity inside a transaction: ``await send(command)``, ``await state()``."""

    __slots__ = ("id", "spec", "tx")

    def __init__(self, tx: Transaction, spec: KindSpec, entity_id: str) -> None:
        self.tx = tx
        self.spec = spec
        self.id = entity_id

    def send(self, command: Any) -> Coroutine[Any, Any, list[Any]]:
        """Decide ``command`` in the transaction (await it); a DomainError propagates."""
        return self.tx.send(self.spec, self.id, command)

    async def state(self) -> Any:
        """The state as this transaction sees it (its own staged events included)."""
        return (await self.tx.participant(self.spec, self.id)).state

    async def version(self) -> int:
        return (await self.tx.participant(self.spec, self.id)).read_version

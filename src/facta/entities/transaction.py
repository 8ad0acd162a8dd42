"""Transactions across entities: stage commands locally, commit everything in one append.

A transaction reads each participant's cached state (no mailbox, no lock: nothing is held
across an ``await``), runs commands against a private copy, and commits one multi-stream
append in which **every** participant — written or only read — carries an exact expectation
at the version it was read at. So a commit fails if anything it read has changed, which makes
commands and transactions on one log strictly serializable, ordered by commit position.
Staged events reach the shared cache only after the append commits.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING, Any

from facta.entities.cache import ActiveEntity
from facta.entities.decider import KindSpec, spec_of
from facta.entities.outcome import Committed
from facta.log.event import AppendResult, NewEvent, StreamAppend, Tracking

if TYPE_CHECKING:
    from facta.entities.runtime import Runtime


@dataclasses.dataclass(slots=True, eq=False)
class Participant:
    spec: KindSpec
    stream: str
    state: Any
    read_version: int
    staged: list[Any] = dataclasses.field(default_factory=list)
    metadata: list[dict[str, Any]] = dataclasses.field(default_factory=list)


class Transaction:
    """What ``fn(tx)`` receives: ``tx.entity(Kind, id)`` returns a transactional handle."""

    def __init__(
        self,
        runtime: Runtime,
        command_id: str | None,
        correlation_id: str | None,
        causation_id: str | None,
    ) -> None:
        from facta.entities.runtime import causality

        self.runtime = runtime
        self.command_id = command_id
        self.metadata = causality(command_id, causation_id, correlation_id)
        self.participants: dict[str, Participant] = {}
        self.emitted: dict[str, list[NewEvent]] = {}
        self.result: Committed | None = None

    def entity(self, kind: Any, entity_id: str) -> TxEntity:
        return TxEntity(self, spec_of(kind), entity_id)

    async def participant(self, spec: KindSpec, entity_id: str) -> Participant:
        stream = spec.stream(entity_id)
        found = self.participants.get(stream)
        if found is None:
            entry = await self.runtime.activate(spec, stream)
            if entry.committing:
                await entry.settled(self.runtime.config.mailbox_timeout)
            found = self.participants.get(stream)  # another task of this tx may have won
            if found is None:
                found = Participant(spec, stream, entry.state, entry.version)
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
        p = await self.participant(spec, entity_id)
        decided = spec.run_decide(command, p.state)
        for event in decided:
            p.state = spec.evolve(p.state, event)
            p.staged.append(event)
            p.metadata.append(metadata or self.metadata)
        self.staged(p, decided)
        return decided

    def staged(self, participant: Participant, events: list[Any]) -> None:
        """Called after a command's events were staged (a hook for deliberately broken tests)."""

    def entries(self) -> list[StreamAppend]:
        out = []
        for p in self.participants.values():
            events = tuple(
                p.spec.to_new_event(e, m) for e, m in zip(p.staged, p.metadata, strict=True)
            )
            out.append(StreamAppend(p.stream, events, p.read_version))
        return out

    async def commit(
        self, key: str | None, outcome: Any, tracking: Tracking | None = None
    ) -> AppendResult:
        """Append every participant (read checks for the read-only ones) in one append."""
        extra = [StreamAppend(stream, tuple(events)) for stream, events in self.emitted.items()]
        entries = [*self.entries(), *extra]
        if not entries and key is None and tracking is None:
            return AppendResult(None, None, ())
        marks = self._mark_committing()
        try:
            result = await self.runtime.log.append_many(
                entries, key=key, outcome=outcome if key is not None else None, tracking=tracking
            )
            if not result.replayed:
                self.apply_committed()
        finally:
            for entry, mark in marks:
                entry.committing.discard(mark)
                mark.set_result(None)
        return result

    def _mark_committing(self) -> list[tuple[ActiveEntity, asyncio.Future[None]]]:
        marks = []
        loop = asyncio.get_running_loop()
        for p in self.participants.values():
            entry = self.runtime.cache.peek(p.stream) if p.staged else None
            if entry is not None:
                mark: asyncio.Future[None] = loop.create_future()
                entry.committing.add(mark)
                marks.append((entry, mark))
        return marks

    def apply_committed(self) -> None:
        """Move the shared cache forward by the staged events, where it still is at the read."""
        for p in self.participants.values():
            if not p.staged:
                continue
            entry = self.runtime.cache.peek(p.stream)
            if entry is not None and entry.version == p.read_version:
                first = p.read_version + 1
                entry.advance(zip(range(first, first + len(p.staged)), p.staged, strict=True))
                self.runtime.maybe_snapshot(entry)

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

    def __init__(self, tx: Transaction, spec: KindSpec, entity_id: str) -> None:
        self.tx = tx
        self.spec = spec
        self.id = entity_id

    async def send(self, command: Any) -> list[Any]:
        return await self.tx.send(self.spec, self.id, command)

    async def state(self) -> Any:
        """The state as this transaction sees it (its own staged events included)."""
        return (await self.tx.participant(self.spec, self.id)).state

    async def version(self) -> int:
        return (await self.tx.participant(self.spec, self.id)).read_version

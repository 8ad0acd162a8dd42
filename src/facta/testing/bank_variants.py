"""Deliberately broken runtimes the Jepsen-style bank check must catch.

- ``separate-legs``: a transaction appends each participant on its own (not atomic).
- ``no-dedupe``: command ids are neither looked up nor recorded (no idempotency).
- ``unchecked``: the log ignores expected versions (no optimistic concurrency).
- ``evolve-early``: staged events reach the shared entity cache before the commit.
"""

from __future__ import annotations

from typing import Any

from facta.entities import Runtime, Transaction
from facta.entities.transaction import Participant
from facta.log import AppendResult, Expectation, SqliteLog, StreamWritten, Tracking
from facta.log.sqlite_write import SqliteWriter

VARIANTS = ("correct", "separate-legs", "no-dedupe", "unchecked", "evolve-early")


class _SeparateLegs(Transaction):
    async def commit(
        self, key: str | None, outcome: Any, tracking: Tracking | None = None
    ) -> AppendResult:
        streams: list[StreamWritten] = []
        for entry in self.entries():
            result = await self.runtime.log.append_many([entry])
            streams.extend(result.streams)
        if key is not None:
            await self.runtime.log.append_many([], key=key, outcome=outcome)
        self.apply_committed()
        firsts = [s.first_position for s in streams if s.first_position is not None]
        lasts = [s.last_position for s in streams if s.last_position is not None]
        return AppendResult(min(firsts, default=None), max(lasts, default=None), tuple(streams))


class _EvolveEarly(Transaction):
    def staged(self, participant: Participant, events: list[Any]) -> None:
        entry = self.runtime.cache.peek(participant.stream)
        if entry is not None:
            for event in events:
                entry.state = participant.spec.evolve(entry.state, event)


class _SeparateLegsRuntime(Runtime):
    transaction_class = _SeparateLegs


class _EvolveEarlyRuntime(Runtime):
    transaction_class = _EvolveEarly


class _NoDedupeRuntime(Runtime):
    async def _recorded(self, command_id: str) -> None:
        return None

    def _log_key(self, command_id: str | None) -> None:
        return None


class _UncheckedWriter(SqliteWriter):
    def _check_expectation(self, stream: str, expect: Expectation, current: int) -> None:
        return None


class _UncheckedLog(SqliteLog):
    writer_class = _UncheckedWriter


def open_log(path: str, variant: str) -> SqliteLog:
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}: expected one of {', '.join(VARIANTS)}")
    return _UncheckedLog(path) if variant == "unchecked" else SqliteLog(path)


def make_runtime(log: SqliteLog, variant: str) -> Runtime:
    classes: dict[str, type[Runtime]] = {
        "separate-legs": _SeparateLegsRuntime,
        "no-dedupe": _NoDedupeRuntime,
        "evolve-early": _EvolveEarlyRuntime,
    }
    return classes.get(variant, Runtime)(log)

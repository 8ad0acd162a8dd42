"""Appends whose answers were recorded, and the check that a reopened log still holds them.

Writers under test describe each append as an :class:`AppendSpec` (recorded *before* it is
submitted) and record the :class:`AppendResult` only *after* the append returned. Every event
carries its append's id and its index in that append, so the check can tell, from the log
alone, which append each event belongs to and whether that append is whole.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import apsw
import msgspec

from facta.log import AppendResult, Expect, Expectation, NewEvent, SqliteLog, StreamAppend

EVENT_TYPE = "Recorded"

ViolationKind = Literal["unreadable", "hole", "partial", "changed", "unknown", "lost", "key"]


class DurabilityViolation(AssertionError):
    """The reopened log broke the contract; ``kind`` says how."""

    def __init__(self, kind: ViolationKind, detail: str) -> None:
        self.kind = kind
        super().__init__(f"{kind}: {detail}")


class EntrySpec(msgspec.Struct, array_like=True):
    stream: str
    expect: int | str  # an exact version, or "any"
    events: list[dict[str, Any]]


class AppendSpec(msgspec.Struct):
    id: str
    entries: list[EntrySpec]
    key: str | None = None
    outcome: dict[str, Any] | None = None

    @property
    def event_count(self) -> int:
        return sum(len(e.events) for e in self.entries)

    def request(self) -> list[StreamAppend]:
        return [
            StreamAppend(
                e.stream,
                tuple(NewEvent(type=EVENT_TYPE, data=d) for d in e.events),
                _expectation(e.expect),
            )
            for e in self.entries
        ]

    def expected_events(self) -> list[tuple[str, dict[str, Any]]]:
        return [(e.stream, d) for e in self.entries for d in e.events]

    def submit_sync(self, log: SqliteLog) -> AppendResult:
        return log.append_many_sync(self.request(), key=self.key, outcome=self.outcome)

    async def submit(self, log: SqliteLog) -> AppendResult:
        return await log.append_many(self.request(), key=self.key, outcome=self.outcome)


class Acked(msgspec.Struct):
    """An append and the answer its caller received."""

    spec: AppendSpec
    result: AppendResult


def _expectation(value: int | str) -> Expectation:
    return Expect.ANY if value == "any" else int(value)


class AppendPlanner:
    """Generates one writer's appends: single events, batches, multi-stream appends with read
    checks, exact expectations on the writer's own streams, keys and outcomes."""

    def __init__(self, prefix: str, rng: random.Random, streams: int = 4) -> None:
        self.prefix = prefix
        self.rng = rng
        self.names = [f"{prefix}-s{i}" for i in range(streams)]
        self.versions = dict.fromkeys(self.names, 0)
        self.count = 0

    def next(self) -> AppendSpec:
        """The next append, assuming the previous ones succeeded."""
        rng = self.rng
        self.count += 1
        append_id = f"{self.prefix}-a{self.count}"
        shape = rng.random()
        if shape < 0.45:
            plan = [(rng.choice(self.names), 1)]
        elif shape < 0.7:
            plan = [(rng.choice(self.names), rng.randint(2, 5))]
        else:
            chosen = rng.sample(self.names, rng.randint(2, 3))
            plan = [(name, rng.randint(0 if i else 1, 3)) for i, name in enumerate(chosen)]
        total = sum(n for _, n in plan)
        entries: list[EntrySpec] = []
        index = 0
        for name, count in plan:
            exact = count == 0 or rng.random() < 0.8
            events = []
            for _ in range(count):
                pad = rng.randint(2000, 6000) if rng.random() < 0.05 else rng.randint(0, 200)
                events.append({"a": append_id, "i": index, "n": total, "pad": "x" * pad})
                index += 1
            entries.append(EntrySpec(name, self.versions[name] if exact else "any", events))
            self.versions[name] += count
        key = f"key-{append_id}" if rng.random() < 0.7 else None
        outcome = {"done": append_id} if key is not None and rng.random() < 0.5 else None
        return AppendSpec(append_id, entries, key, outcome)


@dataclasses.dataclass
class CheckReport:
    head: int
    appends_present: int
    acked_checked: int
    lost: list[str]
    keys_checked: int
    keys_replayed: int
    present: frozenset[str]


def read_everything(log: SqliteLog) -> list[Any]:
    events: list[Any] = []
    while True:
        page = log.read_all_sync(after=len(events), limit=1000)
        if not page:
            return events
        events.extend(page)
        if page[-1].position != len(events):
            return events  # a hole: the caller reports it


def check_recovered(
    log: SqliteLog,
    attempted: Mapping[str, AppendSpec],
    acked: Mapping[str, AppendResult],
    *,
    lost_allowed: bool,
    replay: Iterable[str] = (),
) -> CheckReport:
    """Check a reopened log against what its writers were told; raise DurabilityViolation.

    - positions are 1..head without a hole;
    - every append in the log is whole, contiguous and equal to what was submitted;
    - every acknowledged append is at the positions it was acknowledged with — or, when
      ``lost_allowed`` (``durability="normal"`` after power loss), wholly after the head;
    - the idempotency key of an append is recorded exactly when the append is in the log;
    - the keyed appends named in ``replay`` return their original result when submitted again.
    """
    try:
        return _check_recovered(log, attempted, acked, lost_allowed, replay)
    except (apsw.Error, msgspec.DecodeError) as exc:  # a torn file: an error, or garbage
        raise DurabilityViolation("unreadable", f"reading the log failed: {exc!r}") from exc


def _check_recovered(
    log: SqliteLog,
    attempted: Mapping[str, AppendSpec],
    acked: Mapping[str, AppendResult],
    lost_allowed: bool,
    replay: Iterable[str],
) -> CheckReport:
    events = read_everything(log)
    for expected, event in enumerate(events, start=1):
        if event.position != expected:
            raise DurabilityViolation(
                "hole", f"expected position {expected}, found {event.position}"
            )
    head = len(events)
    by_append: dict[str, list[Any]] = {}
    for event in events:
        append_id = event.data.get("a") if isinstance(event.data, dict) else None
        if not isinstance(append_id, str) or append_id not in attempted:
            raise DurabilityViolation(
                "unknown", f"event at position {event.position} belongs to no submitted append"
            )
        by_append.setdefault(append_id, []).append(event)
    for append_id, found in by_append.items():
        _check_whole(attempted[append_id], found)
    lost: list[str] = []
    checked = 0
    for append_id, result in acked.items():
        first, last = result.first_position, result.last_position
        assert first is not None and last is not None
        present = by_append.get(append_id)
        if present is not None:
            if present[0].position != first:
                raise DurabilityViolation(
                    "changed",
                    f"acknowledged append {append_id} at position {first}: found at "
                    f"position {present[0].position}",
                )
            _check_versions(append_id, result, present)
            checked += 1
        elif lost_allowed and first > head:
            lost.append(append_id)
        else:
            where = (
                f"the log ends at position {head}"
                if first > head
                else f"position {first} holds append {events[first - 1].data['a']}"
            )
            raise DurabilityViolation(
                "lost",
                f"acknowledged append {append_id} at positions {first}-{last} is missing: {where}",
            )
    keys = _check_keys(log, attempted, by_append)
    replayed = 0
    for append_id in replay:
        if append_id in lost or attempted[append_id].key is None:
            continue  # without a key (or lost under "normal") a retry appends it anew
        original = acked[append_id]
        again = attempted[append_id].submit_sync(log)
        if not again.replayed or again.first_position != original.first_position:
            raise DurabilityViolation(
                "key",
                f"retrying acknowledged append {append_id} returned {again!r}, "
                f"expected a replay of position {original.first_position}",
            )
        replayed += 1
    if replayed and log.head_sync() != head:
        raise DurabilityViolation("key", f"replays moved the head from {head}")
    return CheckReport(head, len(by_append), checked, lost, keys, replayed, frozenset(by_append))


def _check_whole(spec: AppendSpec, found: list[Any]) -> None:
    expected = spec.expected_events()
    positions = [e.position for e in found]
    if len(found) != len(expected) or positions[-1] - positions[0] + 1 != len(found):
        raise DurabilityViolation(
            "partial",
            f"append {spec.id} has {len(expected)} event(s), found {len(found)} at {positions}",
        )
    for event, (stream, data) in zip(found, expected, strict=True):
        if event.stream != stream or event.data != data or event.type != EVENT_TYPE:
            raise DurabilityViolation(
                "changed", f"append {spec.id}: event at position {event.position} differs"
            )


def _check_versions(append_id: str, result: AppendResult, found: list[Any]) -> None:
    last_version = {e.stream: e.version for e in found}
    for written in result.streams:
        if written.first_position is not None and last_version[written.stream] != written.version:
            raise DurabilityViolation(
                "changed",
                f"append {append_id}: stream {written.stream} at version "
                f"{last_version[written.stream]}, acknowledged {written.version}",
            )


def _check_keys(
    log: SqliteLog, attempted: Mapping[str, AppendSpec], by_append: Mapping[str, list[Any]]
) -> int:
    """A key is part of its append: recorded exactly when the append's events are in the log."""
    checked = 0
    for append_id, spec in attempted.items():
        if spec.key is None:
            continue
        record = log.lookup_sync(spec.key)
        found = by_append.get(append_id)
        if (found is None) != (record is None):
            has, lacks = ("its key", "its events") if found is None else ("its events", "its key")
            raise DurabilityViolation(
                "partial", f"append {append_id}: the log has {has} ({spec.key}) but not {lacks}"
            )
        if (
            found is not None
            and record is not None
            and (
                record.result.first_position != found[0].position or record.outcome != spec.outcome
            )
        ):
            raise DurabilityViolation(
                "key", f"append {append_id}: its key {spec.key} records {record}"
            )
        checked += 1
    return checked

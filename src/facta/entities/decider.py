"""Deciders: the pure domain logic of a kind of entity, and how the runtime reads one.

A kind of entity is three pure pieces and a name::

    class Account:
        name = "account"                     # streams are "account-<id>"
        initial = Balance(0)                 # or a zero-argument function
        @staticmethod
        def decide(command, state): ...      # -> events, or raise a DomainError
        @staticmethod
        def evolve(state, event): ...        # -> new state

Events are either plain :class:`~facta.log.NewEvent` values or typed values registered in an
:class:`~facta.log.EventTypes` given as ``events = types`` on the kind. Optional attributes:
``snapshot_version`` (int, default 1: bump it when the state's shape changes) and
``state_type`` (the type snapshots decode into; defaults to the type of the initial state).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from facta.log.errors import InvalidInput
from facta.log.event import NewEvent, RecordedEvent, check_stream_name
from facta.log.registry import EventTypes

_specs: dict[int, KindSpec] = {}


@dataclasses.dataclass(frozen=True, slots=True)
class KindSpec:
    """What the runtime needs of a kind, read once from the user's class or object."""

    kind: Any
    name: str
    make_initial: Callable[[], Any]
    decide: Callable[[Any, Any], Iterable[Any]]
    evolve: Callable[[Any, Any], Any]
    types: EventTypes | None
    snapshot_version: int
    state_type: Any

    def stream(self, entity_id: str) -> str:
        return check_stream_name(f"{self.name}-{entity_id}")

    def to_new_event(self, event: Any, metadata: dict[str, Any]) -> NewEvent:
        """A decided event as the log takes it, with causality metadata added."""
        if isinstance(event, NewEvent):
            merged = {**event.metadata, **metadata} if event.metadata else metadata
            return NewEvent(
                type=event.type,
                data=event.data,
                metadata=merged,
                schema_version=event.schema_version,
                id=event.id,
            )
        if self.types is None:
            raise InvalidInput(
                f"kind {self.name!r}: decide returned {type(event).__name__}, expected NewEvent "
                "(or set `events = EventTypes()` on the kind to use typed events)"
            )
        return self.types.new_event(event, metadata=metadata)

    def from_recorded(self, event: RecordedEvent) -> Any:
        """A recorded event as ``evolve`` sees it: typed if registered, else a NewEvent."""
        if self.types is not None:
            typed = self.types.decode(event)
            if not isinstance(typed, RecordedEvent):
                return typed
            event = typed
        return NewEvent(
            type=event.type,
            data=event.data,
            metadata=event.metadata,
            schema_version=event.schema_version,
            id=event.id,
        )

    def run_decide(self, command: Any, state: Any) -> list[Any]:
        events = self.decide(command, state)
        if events is None:
            return []
        return list(events)

    def fold(self, state: Any, events: Iterable[Any]) -> Any:
        for event in events:
            state = self.evolve(state, event)
        return state


def spec_of(kind: Any) -> KindSpec:
    """Read (once) the decider of ``kind``: a class of static methods or any object."""
    found = _specs.get(id(kind))
    if found is not None and found.kind is kind:
        return found
    missing = [a for a in ("decide", "evolve", "initial") if not hasattr(kind, a)]
    if missing:
        raise InvalidInput(
            f"{_label(kind)} is not a decider: missing {', '.join(missing)} "
            "(expected initial, decide(command, state) and evolve(state, event))"
        )
    name = getattr(kind, "name", None) or _label(kind).lower()
    if not isinstance(name, str):
        raise InvalidInput(f"{_label(kind)}.name must be a string, found {name!r}")
    check_stream_name(f"{name}-x")
    initial = kind.initial
    make_initial: Callable[[], Any] = initial if callable(initial) else (lambda: initial)
    types = getattr(kind, "events", None)
    if types is not None and not isinstance(types, EventTypes):
        raise InvalidInput(f"{_label(kind)}.events must be an EventTypes, found {types!r}")
    version = getattr(kind, "snapshot_version", 1)
    if not isinstance(version, int) or version < 1:
        raise InvalidInput(f"{_label(kind)}.snapshot_version must be an int >= 1: {version!r}")
    state_type = getattr(kind, "state_type", None) or type(make_initial())
    spec = KindSpec(kind, name, make_initial, kind.decide, kind.evolve, types, version, state_type)
    _specs[id(kind)] = spec
    return spec


def decide_and_evolve(kind: Any, state: Any, command: Any) -> tuple[Any, Sequence[Any]]:
    """Run one command through a decider without any log: ``(new_state, events)``."""
    spec = spec_of(kind)
    events = spec.run_decide(command, state)
    return spec.fold(state, events), events


def _label(kind: Any) -> str:
    return getattr(kind, "__name__", None) or type(kind).__name__

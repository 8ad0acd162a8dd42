"""Processors: pure ``(state, event) -> (state, effects)`` functions run over the log.

An effect is a command to an entity (:class:`Send`) or a new event (:class:`Emit`). The runner
(:mod:`facta.entities.processor_runner`) applies the effects of a micro-batch together with the
processor's tracking record (checkpoint and state) in one append, so each effect happens
exactly once even across crashes. Effect ids derive from the triggering event's position.

Sagas (process managers) are processors whose state remembers the steps of a long-running
piece of work. They hold no entity while they wait, so they are **not isolated**: other
commands interleave between their steps, and compensation is the saga's own business.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from facta.log.event import NewEvent, RecordedEvent

EFFECT_NAMESPACE = uuid.UUID("6f1f3bb2-3f8e-4b8e-9a53-2c1d0e6f7a41")


@dataclasses.dataclass(frozen=True, slots=True)
class Send:
    """Effect: send ``command`` to the entity ``(kind, entity_id)``."""

    kind: Any
    entity_id: str
    command: Any


@dataclasses.dataclass(frozen=True, slots=True)
class Emit:
    """Effect: append ``event`` to ``stream`` (a :class:`NewEvent`)."""

    stream: str
    event: NewEvent


Effect = Send | Emit
Handle = Callable[[Any, RecordedEvent], tuple[Any, Sequence[Effect]]]


@dataclasses.dataclass(frozen=True, slots=True)
class Processor:
    """A named processor. ``types`` / ``stream_prefix`` filter the events it is given.

    ``state_type`` is what the stored state decodes into (default: plain JSON values).
    """

    name: str
    handle: Handle
    initial: Any = None
    types: tuple[str, ...] | None = None
    stream_prefix: str | None = None
    state_type: Any = None

    @property
    def stream(self) -> str:
        """The stream of this processor's own facts: refusals, failures, skips."""
        return f"processor-{self.name}"

    def encode_state(self, state: Any) -> Any:
        return msgspec.to_builtins(state)

    def decode_state(self, raw: Any) -> Any:
        if raw is None:
            return self.initial
        if self.state_type is None:
            return raw
        return msgspec.convert(raw, self.state_type)


def effect_id(name: str, position: int, index: int) -> str:
    """The id of the ``index``-th effect of event ``position`` for processor ``name``."""
    return f"{name}@{position}#{index}"


def effect_event_id(effect: str) -> uuid.UUID:
    """A stable event id for an emitted effect: re-emitting it can never add a duplicate."""
    return uuid.uuid5(EFFECT_NAMESPACE, effect)


def effect_metadata(cause: RecordedEvent, effect: str) -> dict[str, Any]:
    return {
        "command_id": effect,
        "causation_id": str(cause.id),
        "correlation_id": cause.correlation_id or str(cause.id),
    }

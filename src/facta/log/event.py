"""The values that flow through the log: events to append, recorded events, expectations."""

from __future__ import annotations

import enum
import re
from datetime import datetime
from typing import Any, Final, TypeAlias
from uuid import UUID

import msgspec

from facta.log.errors import InvalidInput

STREAM_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}")
EVENT_TYPE_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,199}")
RESERVED_METADATA: Final = ("causation_id", "correlation_id")


class Expect(enum.Enum):
    """What an append expects of its stream, besides an exact version (an ``int``)."""

    ANY = "any"
    NO_STREAM = "no_stream"
    STREAM_EXISTS = "stream_exists"


Expectation: TypeAlias = int | Expect
"""An exact version (0 means the stream has no events yet) or one of :class:`Expect`."""


class NewEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event the caller wants to append.

    ``id`` is generated (UUIDv7) unless given; ``recorded_at`` always comes from the log's clock.
    """

    type: str
    data: dict[str, Any] = msgspec.field(default_factory=dict)
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    schema_version: int = 1
    id: UUID | None = None


class RecordedEvent(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """An event as the log holds it. ``position`` orders the log; ``version`` orders its stream.

    Not tracked by the cyclic garbage collector (reads create them by the thousand, and the
    collector's passes over them cost more than decoding); an event is frozen and holds only
    JSON values, so it cannot be part of a cycle unless its dicts are made to contain it.
    """

    position: int
    stream: str
    version: int
    type: str
    schema_version: int
    id: UUID
    recorded_at: datetime
    data: dict[str, Any]
    metadata: dict[str, Any]

    @property
    def causation_id(self) -> str | None:
        value = self.metadata.get("causation_id")
        return None if value is None else str(value)

    @property
    def correlation_id(self) -> str | None:
        value = self.metadata.get("correlation_id")
        return None if value is None else str(value)


class Checkpoint(msgspec.Struct, frozen=True):
    """Yielded by filtered subscriptions: every event up to ``position`` has been scanned."""

    position: int


class StreamAppend(msgspec.Struct, frozen=True):
    """One stream's part of a multi-stream append.

    With no events and an exact ``expect`` it is a read check: the append fails if the stream
    has moved since it was read.
    """

    stream: str
    events: tuple[NewEvent, ...] | list[NewEvent] = ()
    expect: Expectation = Expect.ANY


class Tracking(msgspec.Struct, frozen=True):
    """A consumer's tracking record, written in the same transaction as an append.

    The log stores ``(name, position, state)`` and refuses the append unless the stored
    position equals ``expect`` (0: no record yet), so two runners cannot both advance.
    """

    name: str
    position: int
    state: Any = None
    expect: int = 0


class StreamWritten(msgspec.Struct, frozen=True):
    """What an append did to one stream: its version afterwards and the positions it wrote."""

    stream: str
    version: int
    first_position: int | None
    last_position: int | None


class AppendResult(msgspec.Struct, frozen=True):
    """The answer to a successful append.

    ``replayed`` is true when the idempotency key had already been used for the same request: the
    original result is returned and nothing was written.
    """

    first_position: int | None
    last_position: int | None
    streams: tuple[StreamWritten, ...]
    key: str | None = None
    outcome: Any = None
    replayed: bool = False

    def version_of(self, stream: str) -> int:
        for written in self.streams:
            if written.stream == stream:
                return written.version
        raise KeyError(stream)


class OutcomeRecord(msgspec.Struct, frozen=True):
    """A recorded idempotency key with the result it produced and the caller's outcome."""

    key: str
    result: AppendResult
    outcome: Any
    recorded_at: datetime


def check_stream_name(stream: object) -> str:
    if not isinstance(stream, str) or STREAM_NAME.fullmatch(stream) is None:
        raise InvalidInput(
            f"invalid stream name {stream!r}: expected 1-200 characters matching "
            f"{STREAM_NAME.pattern} ('$' is reserved)"
        )
    return stream


def check_event_type(event_type: object) -> str:
    if not isinstance(event_type, str) or EVENT_TYPE_NAME.fullmatch(event_type) is None:
        raise InvalidInput(
            f"invalid event type {event_type!r}: expected 1-200 characters matching "
            f"{EVENT_TYPE_NAME.pattern}"
        )
    return event_type


def check_expectation(expect: object) -> Expectation:
    if isinstance(expect, Expect):
        return expect
    if isinstance(expect, int) and not isinstance(expect, bool) and expect >= 0:
        return expect
    raise InvalidInput(
        f"unknown expectation {expect!r}: expected a version >= 0, Expect.ANY, "
        "Expect.NO_STREAM or Expect.STREAM_EXISTS"
    )


def parse_expectation(text: str) -> Expectation:
    """Parse the CLI and HTTP spelling of an expectation: ``N``, ``any``, ``none``, ``exists``."""
    lowered = text.strip().lower()
    named = {
        "any": Expect.ANY,
        "none": Expect.NO_STREAM,
        "no_stream": Expect.NO_STREAM,
        "exists": Expect.STREAM_EXISTS,
        "stream_exists": Expect.STREAM_EXISTS,
    }
    if lowered in named:
        return named[lowered]
    if lowered.isdigit():
        return int(lowered)
    raise InvalidInput(f"unknown expectation {text!r}: expected N, any, none or exists")

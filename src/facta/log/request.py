"""An append request checked, encoded and hashed before it reaches any backend.

Everything that can be known about a request without the log — names, JSON, limits, its hash —
is settled here, so a backend only checks expectations and keys inside its write transaction.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from typing import Any

import msgspec

from facta.log.codec import encode_json, encode_object
from facta.log.config import LogConfig
from facta.log.errors import InvalidInput, LimitExceeded
from facta.log.event import (
    Expect,
    Expectation,
    NewEvent,
    StreamAppend,
    Tracking,
    check_event_type,
    check_expectation,
    check_stream_name,
)
from facta.log.ids import uuid7_texts

_LENGTH = struct.Struct("<Q")
# Event type names already checked, so the pattern runs once per name (bounded).
_known_types: set[str] = set()


class PreparedEvent(msgspec.Struct, frozen=True):
    id: str
    type: str
    schema_version: int
    data: str
    metadata: str
    causation_id: str | None
    correlation_id: str | None
    id_given: bool


class PreparedStream(msgspec.Struct, frozen=True):
    stream: str
    expect: Expectation
    events: tuple[PreparedEvent, ...]


class PreparedTracking(msgspec.Struct, frozen=True):
    name: str
    position: int
    state: str
    expect: int


class PreparedAppend(msgspec.Struct, frozen=True):
    streams: tuple[PreparedStream, ...]
    key: str | None
    outcome: str | None
    digest: bytes
    event_count: int
    size: int
    tracking: PreparedTracking | None = None

    @property
    def has_given_ids(self) -> bool:
        return any(e.id_given for s in self.streams for e in s.events)


def prepare_append(
    entries: Sequence[StreamAppend],
    *,
    key: str | None,
    outcome: Any,
    config: LogConfig,
    tracking: Tracking | None = None,
) -> PreparedAppend:
    """Validate and encode an append; raise :class:`InvalidInput` naming the first problem."""
    if key is not None and (not isinstance(key, str) or not 0 < len(key) <= 500):
        raise InvalidInput(f"idempotency key must be a string of 1-500 characters, found {key!r}")
    if outcome is not None and key is None:
        raise InvalidInput("an outcome can only be recorded with an idempotency key")
    if not entries and key is None and tracking is None:
        raise InvalidInput(
            "an append needs at least one stream (or a key with an outcome, or a tracking record)"
        )
    digest = hashlib.sha256()
    seen: set[str] = set()
    streams: list[PreparedStream] = []
    count = 0
    size = 0
    for entry in entries:
        if not isinstance(entry, StreamAppend):
            raise InvalidInput(f"expected StreamAppend entries, found {type(entry).__name__}")
        stream = check_stream_name(entry.stream)
        if stream in seen:
            raise InvalidInput(f"stream {stream!r} appears twice in one append")
        seen.add(stream)
        expect = check_expectation(entry.expect)
        if not entry.events and not isinstance(expect, int):
            raise InvalidInput(
                f"stream {stream!r}: an entry without events is a read check and needs an "
                f"exact version, found {_spell(expect)}"
            )
        _feed(digest, "s", stream, _spell(expect))
        ids = uuid7_texts(len(entry.events))
        prepared = tuple(
            [
                _prepare_event(stream, e, config, digest, new_id)
                for e, new_id in zip(entry.events, ids, strict=True)
            ]
        )
        count += len(prepared)
        for e in prepared:
            size += len(e.data) + len(e.metadata)
        streams.append(PreparedStream(stream, expect, prepared))
    if count > config.max_append_events:
        raise LimitExceeded(
            f"append of {count} events exceeds max_append_events={config.max_append_events}"
        )
    if size > config.max_append_bytes:
        raise LimitExceeded(
            f"append of {size} bytes exceeds max_append_bytes={config.max_append_bytes}"
        )
    outcome_json: str | None = None
    if outcome is not None:
        outcome_json = encode_json_checked(outcome, "outcome")
        _feed(digest, "o", outcome_json)
    prepared_tracking = _prepare_tracking(tracking) if tracking is not None else None
    if prepared_tracking is not None:
        t = prepared_tracking
        _feed(digest, "t", t.name, str(t.position), t.state, str(t.expect))
    return PreparedAppend(
        tuple(streams), key, outcome_json, digest.digest(), count, size, prepared_tracking
    )


def _prepare_tracking(tracking: Tracking) -> PreparedTracking:
    if not isinstance(tracking, Tracking):
        raise InvalidInput(f"expected a Tracking record, found {type(tracking).__name__}")
    if not isinstance(tracking.name, str) or not 0 < len(tracking.name) <= 200:
        raise InvalidInput(f"tracking name must be 1-200 characters, found {tracking.name!r}")
    for field in ("position", "expect"):
        value = getattr(tracking, field)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise InvalidInput(f"tracking {tracking.name!r}: {field} must be an int >= 0")
    state = encode_json_checked(tracking.state, f"tracking {tracking.name!r} state")
    return PreparedTracking(tracking.name, tracking.position, state, tracking.expect)


def encode_json_checked(value: Any, what: str) -> str:
    from facta.log.codec import find_non_finite

    bad = find_non_finite(value)
    if bad is not None:
        raise InvalidInput(f"{what} holds a non-finite number at {bad!r}")
    try:
        return encode_json(value).decode()
    except TypeError as exc:
        raise InvalidInput(f"{what} is not JSON-serialisable: {exc}") from None


def _prepare_event(
    stream: str, event: NewEvent, config: LogConfig, digest: Any, new_id: str
) -> PreparedEvent:
    if type(event) is not NewEvent and not isinstance(event, NewEvent):
        raise InvalidInput(
            f"stream {stream!r}: expected NewEvent, found {type(event).__name__} "
            "(register typed events with EventTypes and use EventTypes.new_event)"
        )
    event_type = event.type
    if type(event_type) is not str or event_type not in _known_types:
        check_event_type(event_type)
        if len(_known_types) < 10_000:
            _known_types.add(event_type)
    version = event.schema_version
    if type(version) is not int or version < 1:
        raise InvalidInput(f"event {event_type!r}: schema_version must be an int >= 1")
    metadata = event.metadata
    data = _encode_body(event.data, stream, event_type, "data")
    meta = _encode_body(metadata, stream, event_type, "metadata")
    causation = _reserved(metadata, "causation_id", stream, event_type)
    correlation = _reserved(metadata, "correlation_id", stream, event_type)
    if len(data) + len(meta) > config.max_event_bytes:
        raise LimitExceeded(
            f"{_where(stream, event_type)} is {len(data) + len(meta)} bytes, over "
            f"max_event_bytes={config.max_event_bytes}"
        )
    given = event.id is not None
    event_id = str(event.id) if given else new_id
    # One update per event: the parts, each prefixed with its length, as _feed would.
    parts = (b"e", event_type.encode(), str(version).encode(), event_id.encode() if given else b"")
    digest.update(
        b"".join([_LENGTH.pack(len(part)) + part for part in parts])
        + _LENGTH.pack(len(data))
        + data
        + _LENGTH.pack(len(meta))
        + meta
    )
    return PreparedEvent(
        event_id, event_type, version, data.decode(), meta.decode(), causation, correlation, given
    )


def _where(stream: str, event_type: str) -> str:
    return f"event {event_type!r} in stream {stream!r}"


def _encode_body(value: object, stream: str, event_type: str, part: str) -> bytes:
    """Canonical JSON of an event's data or metadata; the checks run in full only when needed."""
    if type(value) is dict:
        try:
            encoded = encode_json(value)
        except (TypeError, msgspec.EncodeError):
            pass  # encode_object below names the problem
        else:
            # msgspec writes NaN and infinities as null: only output with a null needs the walk.
            if b"null" not in encoded:
                return encoded
    return encode_object(value, f"{_where(stream, event_type)}: {part}")


def _reserved(metadata: object, name: str, stream: str, event_type: str) -> str | None:
    if not isinstance(metadata, dict):
        return None  # _encode_body reports it
    value = metadata.get(name)
    if value is None or isinstance(value, str):
        return value
    raise InvalidInput(
        f"{_where(stream, event_type)}: metadata.{name} is reserved and must be a string, "
        f"found {type(value).__name__}"
    )


def _feed(digest: Any, *parts: str) -> None:
    for part in parts:
        raw = part.encode()
        digest.update(_LENGTH.pack(len(raw)))
        digest.update(raw)


def _spell(expect: Expectation) -> str:
    return expect.value if isinstance(expect, Expect) else str(expect)

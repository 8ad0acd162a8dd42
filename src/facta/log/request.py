"""An append request checked, encoded and hashed before it reaches any backend.

Everything that can be known about a request without the log — names, JSON, limits, its hash —
is settled here, so a backend only checks expectations and keys inside its write transaction.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from typing import Any
from uuid import UUID

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
from facta.log.ids import uuid7_blobs

_LENGTH = struct.Struct("<Q")
_pack = _LENGTH.pack
_NO_ID = _pack(0)
# Checked names, each with the hash prefix it contributes, so a name is checked and encoded
# once (bounded: past the limit, names are checked on every use).
_KNOWN_LIMIT = 10_000
_event_prefixes: dict[tuple[str, int], bytes] = {}
_stream_prefixes: dict[str, bytes] = {}


# Prepared events and streams hold only strings, bytes, ints and each other: they cannot be part
# of a reference cycle, so the cyclic collector need not track them (two per event appended).
class PreparedEvent(msgspec.Struct, frozen=True, gc=False):
    id: bytes  # the 16 bytes of the UUID, as the log stores it
    type: str
    schema_version: int
    data: str
    metadata: str
    causation_id: str | None
    correlation_id: str | None
    id_given: bool


class PreparedStream(msgspec.Struct, frozen=True, gc=False):
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
    has_given_ids: bool = False
    # Earlier appends of this process this one was decided on (AppendTicket); not hashed: a
    # retry of the same request is the same request whatever it waited for.
    after: tuple[Any, ...] = ()


def prepare_append(
    entries: Sequence[StreamAppend],
    *,
    key: str | None,
    outcome: Any,
    config: LogConfig,
    tracking: Tracking | None = None,
    after: tuple[Any, ...] = (),
) -> PreparedAppend:
    """Validate and encode an append; raise :class:`InvalidInput` naming the first problem.

    The request hash is SHA-256 over length-prefixed parts (stream and expectation; each event's
    type, schema version, given id, data and metadata; the outcome; the tracking record),
    gathered in a list and hashed once.
    """
    if key is not None and (not isinstance(key, str) or not 0 < len(key) <= 500):
        raise InvalidInput(f"idempotency key must be a string of 1-500 characters, found {key!r}")
    if outcome is not None and key is None:
        raise InvalidInput("an outcome can only be recorded with an idempotency key")
    if not entries and key is None and tracking is None:
        raise InvalidInput(
            "an append needs at least one stream (or a key with an outcome, or a tracking record)"
        )
    chunks: list[bytes] = []
    checked: list[tuple[str, bytes, Expectation, Sequence[NewEvent]]] = []
    count = 0
    seen: set[str] | None = set() if len(entries) > 1 else None
    for entry in entries:
        if type(entry) is not StreamAppend and not isinstance(entry, StreamAppend):
            raise InvalidInput(f"expected StreamAppend entries, found {type(entry).__name__}")
        stream = entry.stream
        prefix = _stream_prefixes.get(stream) if type(stream) is str else None
        if prefix is None:
            prefix = _stream_prefix(stream)
        if seen is not None:
            if stream in seen:
                raise InvalidInput(f"stream {stream!r} appears twice in one append")
            seen.add(stream)
        expect = entry.expect
        if type(expect) is not int or expect < 0:
            expect = check_expectation(expect)
        events = entry.events
        if not events and type(expect) is not int:
            raise InvalidInput(
                f"stream {stream!r}: an entry without events is a read check and needs an "
                f"exact version, found {_spell(expect)}"
            )
        count += len(events)
        checked.append((stream, prefix, expect, events))
    # The ids of the whole append in one draw, in order (one lock, one clock read).
    ids = iter(uuid7_blobs(count))
    streams: list[PreparedStream] = []
    size = 0
    given_ids = False
    max_event_bytes = config.max_event_bytes
    # Events of one command share their metadata dict: it is checked and encoded once.
    shared = _SharedMetadata()
    for stream, prefix, expect, stream_events in checked:
        spelled = expect.value.encode() if isinstance(expect, Expect) else b"%d" % expect
        chunks += (prefix, _pack(len(spelled)), spelled)
        prepared = tuple(
            [
                _prepare_event(stream, e, max_event_bytes, chunks, next(ids), shared)
                for e in stream_events
            ]
        )
        for e in prepared:
            size += len(e.data) + len(e.metadata)
            if e.id_given:
                given_ids = True
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
        chunks.append(_parts("o", outcome_json))
    prepared_tracking = _prepare_tracking(tracking) if tracking is not None else None
    if prepared_tracking is not None:
        t = prepared_tracking
        chunks.append(_parts("t", t.name, str(t.position), t.state, str(t.expect)))
    return PreparedAppend(
        tuple(streams),
        key,
        outcome_json,
        hashlib.sha256(b"".join(chunks)).digest(),
        count,
        size,
        prepared_tracking,
        given_ids,
        after,
    )


def _stream_prefix(stream: object) -> bytes:
    """Check a stream name; its part of the request hash."""
    name = check_stream_name(stream)
    prefix = _parts("s", name)
    if len(_stream_prefixes) < _KNOWN_LIMIT:
        _stream_prefixes[name] = prefix
    return prefix


def _event_prefix(event_type: object, version: object) -> bytes:
    """Check an event type name and schema version; their part of the request hash."""
    name = check_event_type(event_type)
    if type(version) is not int or version < 1:
        raise InvalidInput(f"event {name!r}: schema_version must be an int >= 1")
    prefix = _parts("e", name, str(version))
    if len(_event_prefixes) < _KNOWN_LIMIT:
        _event_prefixes[(name, version)] = prefix
    return prefix


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
    """Canonical JSON of ``value`` as text; non-finite numbers and non-JSON values refused."""
    try:
        encoded = encode_json(value)
    except (TypeError, msgspec.EncodeError):
        pass  # the checks below name the problem
    else:
        # msgspec writes NaN and infinities as null: only output with a null needs the walk.
        if b"null" not in encoded:
            return encoded.decode()
    from facta.log.codec import find_non_finite

    bad = find_non_finite(value)
    if bad is not None:
        raise InvalidInput(f"{what} holds a non-finite number at {bad!r}")
    try:
        return encode_json(value).decode()
    except TypeError as exc:
        raise InvalidInput(f"{what} is not JSON-serialisable: {exc}") from None


class _SharedMetadata:
    """The last metadata dict one append encoded, with its checked parts: the events a command
    decides all carry the same dict, encoded and checked once per append."""

    __slots__ = ("causation", "correlation", "encoded", "text", "value")

    def __init__(self) -> None:
        self.value: object = None
        self.encoded = b""
        self.text = ""
        self.causation: str | None = None
        self.correlation: str | None = None


def _prepare_event(
    stream: str,
    event: NewEvent,
    max_event_bytes: int,
    chunks: list[bytes],
    new_id: bytes,
    shared: _SharedMetadata,
) -> PreparedEvent:
    if type(event) is not NewEvent and not isinstance(event, NewEvent):
        raise InvalidInput(
            f"stream {stream!r}: expected NewEvent, found {type(event).__name__} "
            "(register typed events with EventTypes and use EventTypes.new_event)"
        )
    event_type = event.type
    version = event.schema_version
    prefix = None
    if type(event_type) is str and type(version) is int:
        prefix = _event_prefixes.get((event_type, version))
    if prefix is None:
        prefix = _event_prefix(event_type, version)
    data = _encode_body(event.data, stream, event_type, "data")
    metadata = event.metadata
    if metadata is not shared.value or type(metadata) is not dict:
        meta = _encode_body(metadata, stream, event_type, "metadata")
        causation = metadata.get("causation_id")
        correlation = metadata.get("correlation_id")
        if causation is not None and not isinstance(causation, str):
            _refuse_reserved("causation_id", causation, stream, event_type)
        if correlation is not None and not isinstance(correlation, str):
            _refuse_reserved("correlation_id", correlation, stream, event_type)
        shared.value, shared.encoded, shared.text = metadata, meta, meta.decode()
        shared.causation, shared.correlation = causation, correlation
    meta = shared.encoded
    if len(data) + len(meta) > max_event_bytes:
        raise LimitExceeded(
            f"{_where(stream, event_type)} is {len(data) + len(meta)} bytes, over "
            f"max_event_bytes={max_event_bytes}"
        )
    given = event.id
    if given is None:
        event_id = new_id
        id_part = _NO_ID
    else:
        event_id = _given_id(given, stream, event_type)
        text = str(UUID(bytes=event_id)).encode()
        id_part = _pack(len(text)) + text
    chunks += (prefix, id_part, _pack(len(data)), data, _pack(len(meta)), meta)
    return PreparedEvent(
        event_id,
        event_type,
        version,
        data.decode(),
        shared.text,
        shared.causation,
        shared.correlation,
        given is not None,
    )


def _given_id(value: object, stream: str, event_type: str) -> bytes:
    if isinstance(value, UUID):
        return value.bytes
    try:
        return UUID(str(value)).bytes
    except ValueError:
        raise InvalidInput(
            f"{_where(stream, event_type)}: id must be a UUID, found {value!r}"
        ) from None


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


def _refuse_reserved(name: str, value: object, stream: str, event_type: str) -> None:
    raise InvalidInput(
        f"{_where(stream, event_type)}: metadata.{name} is reserved and must be a string, "
        f"found {type(value).__name__}"
    )


def _parts(*parts: str) -> bytes:
    """The parts, each prefixed with its length: no two sequences of parts give the same bytes."""
    out = []
    for part in parts:
        raw = part.encode()
        out.append(_pack(len(raw)) + raw)
    return b"".join(out)


def _spell(expect: Expectation) -> str:
    return expect.value if isinstance(expect, Expect) else str(expect)

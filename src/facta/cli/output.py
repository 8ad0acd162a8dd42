"""What the commands print: JSON lines on stdout, tables and progress on a terminal."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any

import msgspec

from facta.log import RecordedEvent

_encoder = msgspec.json.Encoder()


def event_dict(event: RecordedEvent) -> dict[str, Any]:
    return {
        "position": event.position,
        "stream": event.stream,
        "version": event.version,
        "type": event.type,
        "schema_version": event.schema_version,
        "id": event.id,
        "recorded_at": event.recorded_at,
        "data": event.data,
        "metadata": event.metadata,
    }


def json_line(value: Any) -> bytes:
    return _encoder.encode(value) + b"\n"


def write_lines(lines: Iterable[bytes], *, flush: bool = True) -> None:
    out = sys.stdout.buffer
    out.write(b"".join(lines))
    if flush:
        out.flush()


def write_json(value: Any) -> None:
    write_lines([json_line(value)])


def write_events(events: Iterable[RecordedEvent]) -> None:
    write_lines(json_line(event_dict(e)) for e in events)


def silence_stdout() -> None:
    """After a broken pipe (``facta read --all | head``): drop further output quietly."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    finally:
        os.close(devnull)

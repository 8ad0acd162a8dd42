"""What a command or transaction produced, and how refusals are recorded and replayed."""

from __future__ import annotations

from typing import Any

import msgspec

from facta.entities.errors import DomainError
from facta.log.codec import encode_json
from facta.log.event import AppendResult, OutcomeRecord

ACCEPTED: dict[str, Any] = {"status": "accepted"}


class Accepted(msgspec.Struct, frozen=True):
    """A command the entity accepted. ``replayed``: the command id was already recorded."""

    command_id: str | None
    stream: str
    version: int
    first_position: int | None
    last_position: int | None
    replayed: bool = False


class Committed(msgspec.Struct, frozen=True):
    """A transaction that committed. ``value`` is what the function returned (None if replayed)."""

    command_id: str | None
    first_position: int | None
    last_position: int | None
    streams: dict[str, int]
    replayed: bool = False
    value: Any = None


class CommandRefused(DomainError):
    """A recorded refusal whose domain error class is not importable in this process."""


def refusal(error: DomainError) -> dict[str, Any]:
    """The outcome recorded for a refused command: the error's class and JSON-able args."""
    args: list[Any] = []
    for arg in error.args:
        try:
            encode_json(arg)
        except TypeError:
            arg = repr(arg)
        args.append(arg)
    cls = type(error)
    return {
        "status": "refused",
        "error": f"{cls.__module__}:{cls.__qualname__}",
        "args": args,
        "message": str(error),
    }


def replay_refusal(outcome: dict[str, Any]) -> DomainError:
    """Rebuild the domain error of a recorded refusal (``replayed`` set to True)."""
    cls = DomainError.registry.get(str(outcome.get("error")))
    args = tuple(outcome.get("args") or ())
    error: DomainError
    if cls is None:
        error = CommandRefused(f"{outcome.get('error')}: {outcome.get('message')}")
    else:
        try:
            error = cls(*args)
        except TypeError:
            error = cls.__new__(cls)
            error.args = args
    error.replayed = True
    return error


def is_refusal(outcome: Any) -> bool:
    return isinstance(outcome, dict) and outcome.get("status") == "refused"


def accepted_from(
    record: OutcomeRecord | AppendResult, command_id: str | None, stream: str
) -> Accepted:
    result = record.result if isinstance(record, OutcomeRecord) else record
    try:
        version = result.version_of(stream)
    except KeyError:
        version = 0
    return Accepted(
        command_id,
        stream,
        version,
        result.first_position,
        result.last_position,
        replayed=isinstance(record, OutcomeRecord) or result.replayed,
    )


def committed_from(
    result: AppendResult, command_id: str | None, *, replayed: bool, value: Any = None
) -> Committed:
    return Committed(
        command_id,
        result.first_position,
        result.last_position,
        {s.stream: s.version for s in result.streams},
        replayed=replayed or result.replayed,
        value=value,
    )

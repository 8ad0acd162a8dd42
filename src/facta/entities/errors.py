"""The errors of the write side: each names the entity or transaction, expected vs found."""

from __future__ import annotations

from typing import Any

from facta.log.errors import FactaError, Overloaded

__all__ = [
    "AlreadyApplied",
    "ConcurrencyConflict",
    "DomainError",
    "Overloaded",
    "ReentrantSend",
    "TransactionConflict",
]


class DomainError(Exception):
    """Raised by a decider to refuse a command. Subclass it for each reason of refusal.

    A refusal is recorded with the command id (class name and ``args``), so sending the same
    command id again raises an equal error without deciding again. Keep ``args`` JSON-friendly.
    """

    replayed: bool = False
    registry: dict[str, type[DomainError]] = {}  # noqa: RUF012 - shared on purpose

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        DomainError.registry[f"{cls.__module__}:{cls.__qualname__}"] = cls


class ConcurrencyConflict(FactaError):
    """An entity's stream kept moving under a command: every retry met a newer version."""

    def __init__(self, stream: str, attempts: int, expected: object, found: int) -> None:
        self.stream = stream
        self.attempts = attempts
        super().__init__(
            f"entity stream {stream!r}: gave up after {attempts} attempts; last expected "
            f"version {expected}, found {found} (another writer keeps appending)"
        )


class TransactionConflict(FactaError):
    """A transaction's reads were invalidated by other commits on every attempt."""

    def __init__(self, attempts: int, stream: str | None, detail: str) -> None:
        self.attempts = attempts
        self.stream = stream
        super().__init__(
            f"transaction gave up after {attempts} attempt(s): stream {stream!r} changed "
            f"after it was read ({detail})"
        )


class ReentrantSend(FactaError):
    """A command handler sent a command to the entity it is already processing."""

    def __init__(self, stream: str) -> None:
        self.stream = stream
        super().__init__(
            f"entity {stream!r} is already processing a command in this task; entities are "
            "not re-entrant (use a transaction to combine commands)"
        )


class CommandInFlight(FactaError):
    """An earlier attempt of this command, given up on by its caller, is still being appended:
    whether it will be written is not known yet, so the command cannot be decided again."""

    def __init__(self, command_id: str, waited: float) -> None:
        self.command_id = command_id
        super().__init__(
            f"command id {command_id!r}: an earlier attempt's append is still in flight after "
            f"{waited:.1f} s; send it again later"
        )


class AlreadyApplied(FactaError):
    """``async with runtime.transaction(command_id=...)`` found the command id already recorded.

    Either before the body ran, or after the body refused the command (a domain error, kept as
    ``__cause__``) because another process applied it meanwhile. ``result`` is the recorded
    outcome.
    """

    def __init__(self, command_id: str, result: Any) -> None:
        self.command_id = command_id
        self.result = result
        super().__init__(f"command id {command_id!r} was already applied: {result!r}")

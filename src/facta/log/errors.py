"""The errors of the log: each names the thing, what was expected and what was found."""

from __future__ import annotations


class FactaError(Exception):
    """Base class of every error facta raises on purpose."""


class InvalidInput(FactaError, ValueError):
    """Input that can never succeed: a bad stream name, data that is not a JSON object, …

    Nothing is written when it is raised.
    """


class LimitExceeded(InvalidInput):
    """An event or an append is larger than the configured limits allow."""


class WrongExpectedVersion(FactaError):
    """An append's expectation did not hold when it was checked, inside the write transaction."""

    def __init__(self, stream: str, expected: object, actual: int) -> None:
        self.stream = stream
        self.expected = expected
        self.actual = actual
        found = "no stream" if actual == 0 else f"version {actual}"
        super().__init__(f"stream {stream!r}: expected {_describe(expected)}, found {found}")


class DependencyFailed(WrongExpectedVersion):
    """An append was decided on an earlier append of this process (``after=``) that was not
    written: refused, replayed, failed, or not yet applied when this one was checked.

    A :class:`WrongExpectedVersion`, since the versions the append expects were read from that
    earlier append's outcome: whoever retries on a conflict retries on this too.
    """

    def __init__(self, stream: str, expected: object, actual: int) -> None:
        super().__init__(stream, expected, actual)
        self.args = (
            f"stream {stream!r}: decided on an earlier append of this process that was not "
            f"written (expected {_describe(expected)}, found "
            f"{'no stream' if actual == 0 else f'version {actual}'})",
        )


class TrackingConflict(FactaError):
    """A tracking record was not at the position the append expected (another runner moved)."""

    def __init__(self, name: str, expected: int, actual: int) -> None:
        self.name = name
        self.expected = expected
        self.actual = actual
        super().__init__(f"tracking record {name!r}: expected position {expected}, found {actual}")


class IdempotencyKeyReused(FactaError):
    """The same idempotency key was sent with a different request."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(
            f"idempotency key {key!r} was already used for a different request "
            "(same key must carry the same streams, expectations, events and outcome)"
        )


class DuplicateEventId(FactaError):
    """A caller-supplied event id already exists in the log."""

    def __init__(self, event_id: str) -> None:
        self.event_id = event_id
        super().__init__(f"event id {event_id} already exists in the log")


class LogBusy(FactaError):
    """Another process held the write lock for longer than ``lock_timeout``."""

    def __init__(self, path: str, waited: float) -> None:
        self.path = path
        self.waited = waited
        super().__init__(f"log {path} is locked by another writer; waited {waited:.3f}s")


class CommitFailed(FactaError):
    """The write transaction of a group-commit batch failed: no append of it took effect.

    If the failure came while syncing the disk, the batch was already in the WAL file and may
    reappear after a crash or power loss: like :class:`AppendTimeout`, this is "unknown", and
    retrying with the same idempotency key returns the original result if it was written.
    """

    def __init__(self, path: str, cause: BaseException) -> None:
        self.path = path
        super().__init__(
            f"commit to {path} failed, no append of this batch took effect (if the disk failed "
            f"while syncing, it may reappear after a restart: retry with the same idempotency "
            f"key): {cause}"
        )
        self.__cause__ = cause


class Overloaded(FactaError):
    """A bounded queue stayed full for longer than its timeout."""


class LogClosed(FactaError):
    """The log was closed before the operation could run."""


class AppendTimeout(FactaError):
    """An append got no answer within ``append_timeout``; it may or may not have been written."""


def _describe(expected: object) -> str:
    from facta.log.event import Expect

    if isinstance(expected, Expect):
        return {
            Expect.ANY: "any version",
            Expect.NO_STREAM: "no stream",
            Expect.STREAM_EXISTS: "an existing stream",
        }[expected]
    return f"version {expected}"

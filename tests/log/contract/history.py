"""The checker of concurrent appends: replay what succeeded against an in-memory model.

Given what a set of concurrent appends answered, and the log they left, it checks that the
answers could come from running the successful appends one at a time in position order:
every success's expectation held at its point, the log holds exactly their events, and every
``WrongExpectedVersion`` reports a version the stream really had between the call and its
answer (so refusing every contender of a race that one of them should win is caught too:
its refusals would report a version at which their expectation held). A breach raises
:class:`HistoryViolation` naming its kind, so a negative control can assert *why* a broken
backend failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from facta.log import (
    AppendResult,
    Expect,
    Expectation,
    RecordedEvent,
    StreamAppend,
    WrongExpectedVersion,
)

KINDS = (
    "double-success",
    "expectation-not-held",
    "log-mismatch",
    "false-conflict",
    "unexpected-error",
)


class HistoryViolation(AssertionError):
    def __init__(self, kind: str, message: str) -> None:
        assert kind in KINDS
        self.kind = kind
        super().__init__(f"{kind}: {message}")


@dataclass(frozen=True)
class Attempt:
    """One append as submitted and answered. Heads are read before the call and after the
    answer, so the stream's state at any instant in between lies within them."""

    entries: tuple[StreamAppend, ...]
    contested: bool
    head_before: int
    head_after: int
    result: AppendResult | None
    error: BaseException | None


def holds(expect: Expectation, version: int) -> bool:
    if expect is Expect.ANY:
        return True
    if expect is Expect.NO_STREAM:
        return version == 0
    if expect is Expect.STREAM_EXISTS:
        return version > 0
    return expect == version


def check_history(
    start_versions: dict[str, int],
    start_head: int,
    attempts: Sequence[Attempt],
    written: Sequence[RecordedEvent],
) -> None:
    """``written`` is the log after ``start_head`` once every attempt has been answered."""
    for index, attempt in enumerate(attempts):
        if attempt.error is not None and not isinstance(attempt.error, WrongExpectedVersion):
            raise HistoryViolation(
                "unexpected-error", f"attempt {index} raised {attempt.error!r}"
            ) from attempt.error
    winners = [a for a in attempts if a.contested and a.result is not None]
    if len(winners) > 1:
        raise HistoryViolation(
            "double-success",
            f"{len(winners)} appends with the same exact expectation "
            f"{winners[0].entries[0].expect} on {winners[0].entries[0].stream!r} all succeeded",
        )
    versions, heads = _replay(start_versions, start_head, attempts, written)
    for index, attempt in enumerate(attempts):
        if isinstance(attempt.error, WrongExpectedVersion):
            _check_conflict(index, attempt, attempt.error, versions, heads)


def _replay(
    start_versions: dict[str, int],
    start_head: int,
    attempts: Sequence[Attempt],
    written: Sequence[RecordedEvent],
) -> tuple[list[dict[str, int]], list[int]]:
    """Apply successes in position order; return the states the log went through and the
    head after each of them."""
    successes = sorted(
        (a for a in attempts if a.result is not None),
        key=lambda a: _first_position(a.result),
    )
    model = dict(start_versions)
    states = [dict(model)]
    heads = [start_head]
    head = start_head
    for attempt in successes:
        result = attempt.result
        assert result is not None
        if result.first_position != head + 1:
            raise HistoryViolation(
                "log-mismatch",
                f"an append wrote from position {result.first_position}, expected {head + 1}",
            )
        for entry in attempt.entries:
            current = model.get(entry.stream, 0)
            if not holds(entry.expect, current):
                raise HistoryViolation(
                    "expectation-not-held",
                    f"an append to {entry.stream!r} expecting {entry.expect} succeeded at "
                    f"position {result.first_position}, where the stream was at {current}",
                )
            for event in entry.events:
                head += 1
                current += 1
                stored = (
                    written[head - start_head - 1] if head - start_head <= len(written) else None
                )
                if stored is None or (stored.stream, stored.version, stored.data) != (
                    entry.stream,
                    current,
                    event.data,
                ):
                    raise HistoryViolation(
                        "log-mismatch",
                        f"position {head}: expected {entry.stream!r} v{current} {event.data}, "
                        f"found {stored}",
                    )
            if result.version_of(entry.stream) != current:
                raise HistoryViolation(
                    "log-mismatch",
                    f"result reports {entry.stream!r} at v{result.version_of(entry.stream)}, "
                    f"the replay at v{current}",
                )
            model[entry.stream] = current
        states.append(dict(model))
        heads.append(head)
    if head - start_head != len(written):
        raise HistoryViolation(
            "log-mismatch",
            f"the log holds {len(written)} new events, the successful appends {head - start_head}",
        )
    return states, heads


def _check_conflict(
    index: int,
    attempt: Attempt,
    error: WrongExpectedVersion,
    states: list[dict[str, int]],
    heads: list[int],
) -> None:
    entry = next((e for e in attempt.entries if e.stream == error.stream), None)
    if entry is None or entry.expect != error.expected:
        raise HistoryViolation(
            "false-conflict",
            f"attempt {index} was refused for {error.stream!r} expecting {error.expected}, "
            "which it did not ask for",
        )
    if holds(entry.expect, error.actual):
        raise HistoryViolation(
            "false-conflict",
            f"attempt {index} was refused, but its expectation {entry.expect} holds at the "
            f"reported version {error.actual}",
        )
    seen = {
        state.get(error.stream, 0)
        for state, head in zip(states, heads, strict=True)
        if attempt.head_before <= head <= attempt.head_after
    }
    if error.actual not in seen:
        raise HistoryViolation(
            "false-conflict",
            f"attempt {index} reports {error.stream!r} at v{error.actual}; between its call "
            f"and its answer the stream had versions {sorted(seen)}",
        )


def _first_position(result: AppendResult | None) -> int:
    assert result is not None and result.first_position is not None
    return result.first_position

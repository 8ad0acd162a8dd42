"""The race checker itself can fail: fabricated histories of each kind of breach are caught."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import pytest

from facta.log import (
    AppendResult,
    Expect,
    NewEvent,
    RecordedEvent,
    StreamAppend,
    StreamWritten,
    WrongExpectedVersion,
)

from .history import Attempt, HistoryViolation, check_history


def entry(stream: str, expect: int | Expect, n: int) -> tuple[StreamAppend, ...]:
    return (StreamAppend(stream, (NewEvent(type="T", data={"n": n}),), expect),)


def won(stream: str, version: int, position: int) -> AppendResult:
    return AppendResult(position, position, (StreamWritten(stream, version, position, position),))


def recorded(position: int, stream: str, version: int, n: int) -> RecordedEvent:
    return RecordedEvent(
        position, stream, version, "T", 1, uuid4(), datetime.now(UTC), {"n": n}, {}
    )


def test_a_sequential_history_passes() -> None:
    attempts = [
        Attempt(entry("s", 2, 1), True, 10, 11, won("s", 3, 11), None),
        Attempt(entry("s", 2, 2), True, 10, 12, None, WrongExpectedVersion("s", 2, 3)),
        Attempt(entry("s", Expect.ANY, 3), False, 10, 12, won("s", 4, 12), None),
    ]
    check_history({"s": 2}, 10, attempts, [recorded(11, "s", 3, 1), recorded(12, "s", 4, 3)])


@pytest.mark.parametrize(
    ("kind", "attempts", "written"),
    [
        (
            "double-success",
            [
                Attempt(entry("s", 2, 1), True, 10, 11, won("s", 3, 11), None),
                Attempt(entry("s", 2, 2), True, 10, 12, won("s", 4, 12), None),
            ],
            [recorded(11, "s", 3, 1), recorded(12, "s", 4, 2)],
        ),
        (
            "expectation-not-held",
            [
                Attempt(entry("s", 2, 1), True, 10, 11, won("s", 3, 11), None),
                Attempt(entry("s", Expect.NO_STREAM, 2), False, 10, 12, won("s", 4, 12), None),
            ],
            [recorded(11, "s", 3, 1), recorded(12, "s", 4, 2)],
        ),
        (
            "false-conflict",  # reports a version the stream never had in its window
            [
                Attempt(entry("s", 2, 1), True, 10, 11, won("s", 3, 11), None),
                Attempt(entry("s", 2, 2), True, 10, 11, None, WrongExpectedVersion("s", 2, 5)),
            ],
            [recorded(11, "s", 3, 1)],
        ),
        (
            "false-conflict",  # refused although its expectation held at the reported version
            [
                Attempt(entry("s", 2, 1), True, 10, 10, None, WrongExpectedVersion("s", 2, 2)),
                Attempt(entry("s", 2, 2), True, 10, 10, None, WrongExpectedVersion("s", 2, 3)),
            ],
            [],
        ),
        (
            "false-conflict",  # every contender refused, though one of them had to win
            [
                Attempt(entry("s", 2, 1), True, 10, 10, None, WrongExpectedVersion("s", 2, 3)),
                Attempt(entry("s", 2, 2), True, 10, 10, None, WrongExpectedVersion("s", 2, 3)),
            ],
            [],
        ),
        (
            "log-mismatch",  # an acknowledged append that the log does not hold
            [Attempt(entry("s", 2, 1), True, 10, 11, won("s", 3, 11), None)],
            [],
        ),
        (
            "log-mismatch",  # a refused append whose event is in the log anyway
            [
                Attempt(entry("s", 2, 1), True, 10, 11, won("s", 3, 11), None),
                Attempt(entry("s", 2, 2), True, 10, 12, None, WrongExpectedVersion("s", 2, 3)),
            ],
            [recorded(11, "s", 3, 1), recorded(12, "s", 4, 2)],
        ),
        (
            "unexpected-error",
            [
                Attempt(entry("s", 2, 1), True, 10, 11, won("s", 3, 11), None),
                Attempt(entry("s", 2, 2), True, 10, 11, None, RuntimeError("disk on fire")),
            ],
            [recorded(11, "s", 3, 1)],
        ),
    ],
)
def test_each_kind_of_breach_is_caught(
    kind: str, attempts: list[Attempt], written: list[RecordedEvent]
) -> None:
    with pytest.raises(HistoryViolation) as caught:
        check_history({"s": 2}, 10, attempts, written)
    assert caught.value.kind == kind

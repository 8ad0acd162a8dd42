"""Bad input and limits: a clear error naming the problem, and nothing written, no key kept."""

from __future__ import annotations

from typing import Any

import pytest

from facta.log import Expect, InvalidInput, LimitExceeded, LogConfig, NewEvent, StreamAppend

from .conftest import OpenLog

LIMITS = LogConfig(max_event_bytes=1000, max_append_bytes=3000, max_append_events=5)


def ev(**data: Any) -> NewEvent:
    return NewEvent(type="T", data=data)


# (label, entries of the append, error type, a fragment the message must contain)
BAD: list[tuple[str, list[StreamAppend], type[InvalidInput], str]] = [
    ("empty stream name", [StreamAppend("", (ev(),))], InvalidInput, "stream name"),
    ("reserved $", [StreamAppend("$all", (ev(),))], InvalidInput, "'$all'"),
    ("leading dash", [StreamAppend("-x", (ev(),))], InvalidInput, "stream name"),
    ("space", [StreamAppend("a b", (ev(),))], InvalidInput, "'a b'"),
    ("non-ascii", [StreamAppend("caf\u00e9", (ev(),))], InvalidInput, "stream name"),
    ("201 chars", [StreamAppend("s" * 201, (ev(),))], InvalidInput, "1-200"),
    (
        "data is a list",
        [StreamAppend("ok", (NewEvent(type="T", data=[1]),))],  # type: ignore[arg-type]
        InvalidInput,
        "JSON object",
    ),
    (
        "data is a string",
        [StreamAppend("ok", (NewEvent(type="T", data="x"),))],  # type: ignore[arg-type]
        InvalidInput,
        "found str",
    ),
    (
        "metadata is a list",
        [StreamAppend("ok", (NewEvent(type="T", metadata=[]),))],  # type: ignore[arg-type]
        InvalidInput,
        "metadata",
    ),
    ("NaN", [StreamAppend("ok", (ev(x={"y": [1.0, float("nan")]}),))], InvalidInput, "x.y[1]"),
    ("+Inf", [StreamAppend("ok", (ev(x=float("inf")),))], InvalidInput, "non-finite"),
    ("-Inf", [StreamAppend("ok", (ev(x=float("-inf")),))], InvalidInput, "non-finite"),
    ("not JSON", [StreamAppend("ok", (ev(x=object()),))], InvalidInput, "JSON"),
    (
        "non-string causation id",
        [StreamAppend("ok", (NewEvent(type="T", metadata={"causation_id": 7}),))],
        InvalidInput,
        "causation_id",
    ),
    ("bad event type", [StreamAppend("ok", (NewEvent(type="1 bad"),))], InvalidInput, "type"),
    (
        "schema version 0",
        [StreamAppend("ok", (NewEvent(type="T", schema_version=0),))],
        InvalidInput,
        "schema_version",
    ),
    ("event over 1000 B", [StreamAppend("ok", (ev(x="y" * 1000),))], LimitExceeded, "1000"),
    (
        "append over 3000 B",
        [StreamAppend("ok", tuple(ev(x="y" * 700) for _ in range(5)))],
        LimitExceeded,
        "max_append_bytes=3000",
    ),
    (
        "six events",
        [StreamAppend("ok", tuple(ev(i=i) for i in range(6)))],
        LimitExceeded,
        "max_append_events=5",
    ),
    (
        "six events over two streams",
        [StreamAppend("a", (ev(), ev(), ev())), StreamAppend("b", (ev(), ev(), ev()))],
        LimitExceeded,
        "6 events",
    ),
    ("expect 'sometimes'", [StreamAppend("ok", (ev(),), "sometimes")], InvalidInput, "sometimes"),  # type: ignore[arg-type]
    ("expect -1", [StreamAppend("ok", (ev(),), -1)], InvalidInput, "-1"),
    ("expect True", [StreamAppend("ok", (ev(),), True)], InvalidInput, "True"),
    ("expect 1.0", [StreamAppend("ok", (ev(),), 1.0)], InvalidInput, "1.0"),  # type: ignore[arg-type]
    ("expect None", [StreamAppend("ok", (ev(),), None)], InvalidInput, "None"),  # type: ignore[arg-type]
    (
        "read check without a version",
        [StreamAppend("a", (ev(),)), StreamAppend("b", (), Expect.STREAM_EXISTS)],
        InvalidInput,
        "read check",
    ),
    (
        "stream twice",
        [StreamAppend("a", (ev(),)), StreamAppend("a", (ev(),))],
        InvalidInput,
        "twice",
    ),
    (
        "second entry bad",
        [StreamAppend("good", (ev(),)), StreamAppend("bad name", (ev(),))],
        InvalidInput,
        "bad name",
    ),
    (
        "not an event",
        [StreamAppend("ok", ({"type": "T"},))],  # type: ignore[arg-type]
        InvalidInput,
        "NewEvent",
    ),
]


@pytest.mark.parametrize(
    ("entries", "error", "fragment"),
    [pytest.param(e, err, f, id=label) for label, e, err, f in BAD],
)
def test_bad_input_raises_a_clear_error_and_writes_nothing(
    open_log: OpenLog,
    entries: list[StreamAppend],
    error: type[InvalidInput],
    fragment: str,
) -> None:
    log = open_log(config=LIMITS)
    log.append_sync("before", [ev()])
    with pytest.raises(error) as caught:
        log.append_many_sync(entries, key="cmd-bad")
    assert fragment in str(caught.value)
    assert log.head_sync() == 1, "bad input wrote events"
    assert log.lookup_sync("cmd-bad") is None, "bad input recorded its key"
    # The log is unharmed: the key and the streams are still free.
    log.append_sync("ok", [ev()], expect=Expect.NO_STREAM, key="cmd-bad")
    assert log.head_sync() == 2


def test_limits_allow_exactly_their_maximum(open_log: OpenLog) -> None:
    log = open_log(config=LIMITS)
    log.append_sync("s" * 200, [ev(i=i) for i in range(5)])
    log.append_sync("A0.b:c-d_e", [ev(x="y" * 900)])
    assert log.head_sync() == 6
    assert log.stream_version_sync("s" * 200) == 5


def test_bad_keys_and_outcomes_are_refused(open_log: OpenLog) -> None:
    log = open_log()
    for key in ["", "k" * 501]:
        with pytest.raises(InvalidInput, match="idempotency key"):
            log.append_sync("s", [ev()], key=key)
    with pytest.raises(InvalidInput, match="non-finite"):
        log.append_sync("s", [ev()], key="k", outcome={"x": float("nan")})
    with pytest.raises(InvalidInput, match="at least one stream"):
        log.append_many_sync([])
    assert log.head_sync() == 0 and log.lookup_sync("k") is None

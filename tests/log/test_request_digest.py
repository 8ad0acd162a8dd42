"""The request digest behind idempotency keys is stable: the same request hashes to the same
bytes whatever the preparation does to save work (one id draw per append, a metadata dict
shared by several events encoded once, the outcome encoded before its non-finite check).

The pinned digests were computed by the preparation before those changes; a key recorded by an
older process must still match a retry of the same request."""

from __future__ import annotations

import math
from typing import Any
from uuid import UUID

import pytest

from facta.log.config import LogConfig
from facta.log.errors import InvalidInput
from facta.log.event import Expect, NewEvent, StreamAppend, Tracking
from facta.log.request import prepare_append

SHARED = {"command_id": "t-1", "causation_id": "t-1", "correlation_id": "t-1"}


def _cases() -> dict[str, tuple[list[StreamAppend], dict[str, Any]]]:
    given = UUID("0190f3a0-0000-7000-8000-000000000001")
    return {
        "transfer": (
            [
                StreamAppend(
                    "acct-1", (NewEvent(type="Withdrawn", data={"amount": 5}, metadata=SHARED),), 3
                ),
                StreamAppend(
                    "acct-2", (NewEvent(type="Deposited", data={"amount": 5}, metadata=SHARED),), 0
                ),
            ],
            {"key": "t-1", "outcome": {"status": "accepted"}},
        ),
        "mixed": (
            [
                StreamAppend(
                    "s-1",
                    (
                        NewEvent(type="A", data={"x": [1, 2.5], "b": None}, metadata={"k": "v"}),
                        NewEvent(
                            type="B", data={}, metadata={"k": "v"}, schema_version=2, id=given
                        ),
                    ),
                    Expect.ANY,
                ),
                StreamAppend("s-2", (), 7),
                StreamAppend(
                    "s-3",
                    (NewEvent(type="A", metadata=SHARED), NewEvent(type="A", metadata=SHARED)),
                    Expect.NO_STREAM,
                ),
            ],
            {
                "key": "k-2",
                "outcome": [1, "two", None],
                "tracking": Tracking("proc", 12, {"n": 1}, 11),
            },
        ),
        "plain": (
            [StreamAppend("s-1", (NewEvent(type="A", data={"v": 1}),))],
            {"key": None, "outcome": None},
        ),
    }


PINNED = {
    "transfer": "4e28db4a126dffbfbb31a24aed53628dbf279b9b8b657cac6f2e6415b665a275",
    "mixed": "9b74fb4cbb0a5353ae0329e045b1d991eb40d87cc5391984b2de0ac0dfa9ed7b",
    "plain": "bd7815491d7880f806ab40eadafcf7b03e015f1588f674e02366035f706f51dd",
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_digest_is_the_one_recorded_before(name: str) -> None:
    entries, options = _cases()[name]
    assert prepare_append(entries, config=LogConfig(), **options).digest.hex() == PINNED[name]


def test_a_shared_metadata_dict_and_equal_copies_prepare_alike() -> None:
    def prepared(second_metadata: dict[str, Any]) -> Any:
        return prepare_append(
            [
                StreamAppend("a-1", (NewEvent(type="T", data={"n": 1}, metadata=SHARED),), 0),
                StreamAppend("a-2", (NewEvent(type="T", data={"n": 2}, metadata=second_metadata),)),
            ],
            key="c-1",
            outcome=None,
            config=LogConfig(),
        )

    shared, copied = prepared(SHARED), prepared(dict(SHARED))
    assert shared.digest == copied.digest
    events = [e for s in shared.streams for e in s.events]
    assert [e.data for e in events] == ['{"n":1}', '{"n":2}']
    assert {e.metadata for e in events} == {
        '{"causation_id":"t-1","command_id":"t-1","correlation_id":"t-1"}'
    }
    assert {(e.causation_id, e.correlation_id) for e in events} == {("t-1", "t-1")}
    # One draw of ids for the append: distinct, increasing in event order.
    ids = [e.id for e in events]
    assert len(set(ids)) == 2 and ids == sorted(ids)


def test_checks_still_refuse_after_a_shared_metadata_dict() -> None:
    bad = {"causation_id": 7}
    with pytest.raises(InvalidInput, match=r"metadata\.causation_id is reserved"):
        prepare_append(
            [
                StreamAppend("a-1", (NewEvent(type="T", metadata=SHARED),)),
                StreamAppend("a-2", (NewEvent(type="T", metadata=bad),)),
            ],
            key=None,
            outcome=None,
            config=LogConfig(),
        )


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_non_finite_outcome_is_refused(bad: float) -> None:
    with pytest.raises(InvalidInput, match=r"outcome holds a non-finite number at 'x\[1\]'"):
        prepare_append(
            [StreamAppend("a-1", (NewEvent(type="T"),))],
            key="c-1",
            outcome={"x": [None, bad]},
            config=LogConfig(),
        )

from __future__ import annotations

import pytest

from facta.log import NewEvent, SqliteLog, StreamAppend, Tracking, TrackingConflict


def ev(n: int) -> NewEvent:
    return NewEvent(type="Noted", data={"n": n})


def test_tracking_is_written_with_the_append_and_read_back(log: SqliteLog) -> None:
    assert log.tracking_sync("p") is None
    log.append_many_sync([StreamAppend("out", (ev(1),))], tracking=Tracking("p", 7, {"k": 1}, 0))
    assert log.tracking_sync("p") == Tracking("p", 7, {"k": 1}, 7)
    log.append_many_sync([], tracking=Tracking("p", 9, {"k": 2}, expect=7))
    assert log.tracking_sync("p") == Tracking("p", 9, {"k": 2}, 9)
    assert log.tracking_names_sync() == ["p"]


def test_stale_tracking_expectation_writes_nothing(log: SqliteLog) -> None:
    log.append_many_sync([], tracking=Tracking("p", 5, None, 0))
    with pytest.raises(TrackingConflict) as caught:
        log.append_many_sync([StreamAppend("out", (ev(1),))], tracking=Tracking("p", 6, None, 4))
    assert (caught.value.name, caught.value.expected, caught.value.actual) == ("p", 4, 5)
    assert log.head_sync() == 0
    assert log.tracking_sync("p") == Tracking("p", 5, None, 5)

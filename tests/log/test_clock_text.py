"""The time text the log stores: the system clock's fast path gives what format_time gives."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest

from facta.log.clock import SystemClock, format_time, now_text

STORED = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


class FixedClock:
    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def now(self) -> datetime:
        return self.moment


def test_the_system_clock_text_is_the_formatted_current_time() -> None:
    clock = SystemClock()
    seen = 0
    for _ in range(2000):
        before = clock.now()
        text = now_text(clock)
        after = clock.now()
        assert STORED.match(text), text
        assert format_time(before) <= text <= format_time(after)
        seen += 1
    assert seen == 2000


def test_the_second_text_follows_the_clock_across_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    # 23:59:59.999999 on 2026-12-31, then one microsecond later, then back (a clock step).
    late = int(datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=UTC).timestamp() * 1e6)
    moments = iter([late, late + 1, late])
    monkeypatch.setattr(time, "time_ns", lambda: next(moments) * 1000)
    texts = [now_text(SystemClock()) for _ in range(3)]
    assert texts == [
        "2026-12-31T23:59:59.999999Z",
        "2027-01-01T00:00:00.000000Z",
        "2026-12-31T23:59:59.999999Z",
    ]


def test_another_clock_is_asked_and_its_time_converted_to_utc() -> None:
    local = datetime(2026, 1, 2, 5, 4, 5, 6, tzinfo=timezone(timedelta(hours=2)))
    assert now_text(FixedClock(local)) == "2026-01-02T03:04:05.000006Z"
    assert now_text(FixedClock(local.astimezone(UTC))) == "2026-01-02T03:04:05.000006Z"

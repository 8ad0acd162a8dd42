"""A sequential scan through ``read_all`` gets its next page read ahead, and never sees less
than a read made at the moment of the call would: a page that ended at the head is read again."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from facta.log import LogClosed, NewEvent, SqliteLog
from facta.log.readahead import ReadAhead, Rows


class TakesAnyPage(ReadAhead):
    """Broken: serves the page read ahead even when it ended at the head."""

    @staticmethod
    def final(rows: Rows, limit: int) -> bool:
        return True


def _fill(log: SqliteLog, events: int, first: int = 0) -> None:
    for n in range(first, first + events):
        log.append_sync(f"s-{n % 7}", [NewEvent(type="Noted", data={"n": n})])


async def _scan(log: SqliteLog, limit: int, types: list[str] | None = None) -> list[int]:
    after, seen = 0, list[int]()
    while True:
        page = await log.read_all(after=after, limit=limit, types=types)
        if not page:
            return seen
        seen += [event.data["n"] for event in page]
        after = page[-1].position


def test_a_sequential_scan_is_served_from_the_read_ahead(tmp_path: Path) -> None:
    with SqliteLog(str(tmp_path / "log.db")) as log:
        _fill(log, 1_000)
        assert asyncio.run(_scan(log, 10)) == list(range(1_000))
        # Pages 3 to 100 were read ahead (the first two calls make a scan recognisable).
        assert log._read_ahead.pages_read_ahead == 98
        log.append_sync("other", [NewEvent(type="Skipped", data={"n": -1})])
        _fill(log, 50, first=1_000)
        assert asyncio.run(_scan(log, 10, types=["Noted"])) == list(range(1_050))
        assert log._read_ahead.pages_read_ahead == 98 + 103


def _append_after_a_page_was_read_ahead(log: SqliteLog) -> list[int]:
    """Two full pages, then the third (partial) page is read ahead, then 5 more events are
    appended: the third call must see them."""

    async def main() -> list[int]:
        first = await log.read_all(after=0, limit=10)
        second = await log.read_all(after=first[-1].position, limit=10)
        ahead: Any = log._read_ahead._ahead
        assert ahead is not None, "the second call of a scan starts a read-ahead"
        await asyncio.wait_for(ahead.rows, timeout=10)  # read ahead: 3 events, the head
        await asyncio.to_thread(_fill, log, 5, 23)
        third = await log.read_all(after=second[-1].position, limit=10)
        return [event.data["n"] for event in third]

    _fill(log, 23)
    return asyncio.run(main())


def test_a_page_that_ended_at_the_head_is_read_again(tmp_path: Path) -> None:
    with SqliteLog(str(tmp_path / "log.db")) as log:
        assert _append_after_a_page_was_read_ahead(log) == list(range(20, 28))
        assert log._read_ahead.pages_read_ahead == 0


def test_the_check_catches_a_read_ahead_that_serves_a_stale_page(tmp_path: Path) -> None:
    with SqliteLog(str(tmp_path / "log.db")) as log:
        log._read_ahead = TakesAnyPage(log._fetch_rows)
        seen = _append_after_a_page_was_read_ahead(log)
    assert seen == [20, 21, 22], "the broken read-ahead misses the events appended since"


def test_a_closed_log_refuses_a_read_even_with_a_page_read_ahead(tmp_path: Path) -> None:
    log = SqliteLog(str(tmp_path / "log.db"))
    _fill(log, 30)

    async def main() -> None:
        first = await log.read_all(after=0, limit=10)
        await log.read_all(after=first[-1].position, limit=10)
        log.close()
        with pytest.raises(LogClosed, match="closed"):
            await log.read_all(after=20, limit=10)

    asyncio.run(main())


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    steps=st.lists(
        st.one_of(st.integers(0, 6), st.just("read"), st.just("restart")), min_size=1, max_size=40
    ),
    limit=st.integers(1, 4),
)
def test_read_all_equals_a_plain_read_whatever_the_appends_between(
    tmp_path_factory: pytest.TempPathFactory, steps: list[int | str], limit: int
) -> None:
    """Property: each page a scan gets equals a read without read-ahead made right after the
    call, whatever appends happen between the calls."""
    path = tmp_path_factory.mktemp("ra") / "log.db"
    with SqliteLog(str(path)) as log:

        async def main() -> None:
            after, written = 0, 0
            for step in steps:
                if step == "restart":
                    after = 0
                elif step == "read":
                    page = await log.read_all(after=after, limit=limit)
                    plain = log.read_all_sync(after=after, limit=limit)
                    assert page == plain
                    if page:
                        after = page[-1].position
                else:
                    assert isinstance(step, int)
                    await asyncio.to_thread(_fill, log, step, written)
                    written += step

        asyncio.run(main())

"""A scan through ``read_all`` gets its next page read ahead, and never sees less than a read
made at the moment of the call would: a page that was not full is read again."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from facta.log import LogClosed, NewEvent, SqliteLog
from facta.log.readahead import FetchedPage, PageRequest, ReadAhead


class ServesAnyPage(ReadAhead):
    """Broken: serves the page read ahead even when it was not full."""

    @staticmethod
    def servable(page: FetchedPage, wanted: PageRequest) -> bool:
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
        # Every page after the first was read ahead; the empty one after the last is read
        # again (the page read ahead of it had no events).
        assert log._read_ahead.pages_served == 99
        log.append_sync("other", [NewEvent(type="Skipped", data={"n": -1})])
        _fill(log, 50, first=1_000)
        assert asyncio.run(_scan(log, 10, types=["Noted"])) == list(range(1_050))
        assert log._read_ahead.pages_served == 99 + 104


def _append_after_a_page_was_read_ahead(log: SqliteLog) -> list[int]:
    """Two full pages, then the third (partial) page is read ahead, then 5 more events are
    appended: the third call must see them."""

    async def main() -> list[int]:
        first = await log.read_all(after=0, limit=10)
        second = await log.read_all(after=first[-1].position, limit=10)
        task: Any = log._read_ahead._task
        assert task is not None, "a full page starts a read ahead"
        await asyncio.wait_for(asyncio.shield(task), timeout=10)  # read: 3 events, the head
        await asyncio.to_thread(_fill, log, 5, 23)
        third = await log.read_all(after=second[-1].position, limit=10)
        return [event.data["n"] for event in third]

    _fill(log, 23)
    return asyncio.run(main())


def test_a_page_that_was_not_full_is_read_again(tmp_path: Path) -> None:
    with SqliteLog(str(tmp_path / "log.db")) as log:
        assert _append_after_a_page_was_read_ahead(log) == list(range(20, 28))
        assert log._read_ahead.pages_served == 1  # the second page only


def test_the_check_catches_a_read_ahead_that_serves_a_stale_page(tmp_path: Path) -> None:
    with SqliteLog(str(tmp_path / "log.db")) as log:
        log._read_ahead = ServesAnyPage(log._fetch_request)
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


def test_pages_come_back_in_order_whichever_order_sqlite_joined_them(tmp_path: Path) -> None:
    """The page's JSON array is joined by an aggregate, whose order SQLite does not promise:
    the decoded page is checked and put in order (here, reversed on purpose)."""
    from facta.log import sqlite as backend

    with SqliteLog(str(tmp_path / "log.db")) as log:
        log.append_sync("one", [NewEvent(type="Noted", data={"n": n}) for n in range(12)])
        text = log._fetch_page(0, 12, None, None, None).text
        assert text is not None
        events = backend._page_decoder.decode(text)
        reversed_text = msgspec.json.encode(list(reversed(events))).decode()
        assert [e.data["n"] for e in backend._decode_page(reversed_text)] == list(range(12))
        backwards = backend._decode_page(text, backend._VERSION, descending=True)
        assert [e.data["n"] for e in backwards] == list(reversed(range(12)))
        assert [
            e.data["n"] for e in log.read_stream_sync("one", from_version=12, backward=True)
        ] == list(reversed(range(12)))


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

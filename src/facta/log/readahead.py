"""Read-ahead for sequential scans: the next page is fetched while the caller works on this one.

A reader catching up with the log (a projection, an export, ``facta bench log``'s
``read_all_decoded``) calls ``read_all(after=…)`` page after page, each call starting where the
last one ended. Fetching a page is SQLite's work (finding the rows and building each row's JSON
text, with the GIL released); decoding it is the caller's thread's. Once two calls in a row
continue each other, :class:`ReadAhead` starts fetching the following page in a worker thread
before the current one is decoded, so the two overlap on two cores, as an operating system
reads ahead of a file read from start to end.

Only a full page is taken from the read-ahead. Positions are gap-free and follow commit order,
so once a page holds ``limit`` events, every event up to its last position was committed before
it was read and no later commit can change it. A page that ended at the head is fetched again
when asked for: events appended since must be seen (a caller reads its own appends).

One page is read ahead at a time, for the last scan that continued itself; a call that does not
match it (another scan, another page size or filter) drops it and reads for itself. A page
read ahead and never asked for costs one page's fetch.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

Rows = list[Any]
# (after, limit, types, stream prefix): what a page was read for.
PageKey = tuple[int, int, tuple[str, ...] | None, str | None]
Fetch = Callable[[int, int, Sequence[str] | None, str | None], Rows]


@dataclasses.dataclass(frozen=True, slots=True)
class _Ahead:
    key: PageKey
    loop: asyncio.AbstractEventLoop
    rows: asyncio.Future[Rows]


def _forget(future: asyncio.Future[Rows]) -> None:
    # A page read ahead that nobody asks for may have failed (the log closed under it): the
    # error is not news to anyone, and asyncio would report it as never retrieved.
    if not future.cancelled():
        future.exception()


class ReadAhead:
    """The pages of ``fetch`` (rows ordered by position, each row's last column the position),
    with the next page of a sequential scan read ahead in the loop's default executor."""

    def __init__(self, fetch: Fetch) -> None:
        self._fetch = fetch
        self._ahead: _Ahead | None = None
        self._scan_end: PageKey | None = None  # the page a scan's next call would ask for
        self.pages_read_ahead = 0  # pages served from the read-ahead (for tests and stats)

    async def page(
        self, after: int, limit: int, types: Sequence[str] | None, stream_prefix: str | None
    ) -> Rows:
        loop = asyncio.get_running_loop()
        key: PageKey = (after, limit, tuple(types) if types else None, stream_prefix)
        ahead, self._ahead = self._ahead, None
        continues = key == self._scan_end
        rows: Rows | None = None
        if ahead is not None and ahead.key == key and ahead.loop is loop:
            try:
                found = await ahead.rows
            except Exception:  # read again below: the error, if it is lasting, comes from there
                found = []
            if self.final(found, limit):
                rows = found
                self.pages_read_ahead += 1
        if rows is None:
            rows = await loop.run_in_executor(None, self._fetch, after, limit, types, stream_prefix)
        if len(rows) >= limit:
            following: PageKey = (rows[-1][-1], limit, key[2], stream_prefix)
            self._scan_end = following
            if continues:
                future = loop.run_in_executor(
                    None, self._fetch, following[0], limit, types, stream_prefix
                )
                future.add_done_callback(_forget)
                self._ahead = _Ahead(following, loop, future)
        else:
            self._scan_end = None
        return rows

    @staticmethod
    def final(rows: Rows, limit: int) -> bool:
        """Whether a page read ahead still holds what a read now would: only a full one does."""
        return len(rows) >= limit

    def drop(self) -> None:
        """Forget the page read ahead, if any (its fetch still ends in its thread)."""
        self._ahead = None
        self._scan_end = None

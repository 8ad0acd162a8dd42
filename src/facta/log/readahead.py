"""Reading a scan's next page while the caller decodes the current one.

A scan through ``read_all`` asks for page after page. SQLite builds a page (the text of one
JSON array, see ``page_query``) with the GIL released, so a worker thread can read the next
page while the caller's thread decodes this one: the two halves of a read overlap on two cores.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any, Final, NamedTuple

# At most this long, a read ahead waits for its worker to start (see ``ReadAhead.start``).
_START_WAIT_SECONDS: Final = 0.002


class PageRequest(NamedTuple):
    """What ``read_all`` was asked for."""

    after: int
    limit: int
    types: tuple[str, ...]
    prefix: str | None


class FetchedPage(NamedTuple):
    """One page as read: the text of a JSON array of its events (None if it has none), their
    number, the position up to which the log was scanned, and the head."""

    text: str | None
    size: int
    scanned: int
    head: int


class ReadAhead:
    """The page after the last full page ``read_all`` returned, read in a worker thread.

    Only a full page is handed out, and only for exactly the request it was read for. It is
    still exactly that page when taken, however much later: positions are given in commit
    order and never reused, so a later commit can only add events after the page's last one.
    A page that was not full may since have grown, and is read again. At most one page is held
    (the last one started), for the event loop it was started on.
    """

    def __init__(self, fetch: Callable[[PageRequest, Callable[[], object]], FetchedPage]) -> None:
        self._fetch = fetch
        self._wanted: PageRequest | None = None
        self._task: asyncio.Future[FetchedPage] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.pages_served = 0  # pages handed out from a read ahead (tests and stats)

    def start(self, wanted: PageRequest) -> None:
        """Read the page ``wanted`` in a worker thread (dropping any other read ahead)."""
        self._loop = asyncio.get_running_loop()
        self._wanted = wanted
        # Handed to the executor now, not when the event loop next runs a task: the caller
        # decodes the current page before it awaits anything, and that is the time to overlap.
        # And this thread waits (briefly, bounded) until the worker is about to run the page's
        # one statement, which releases the GIL: decoding holds the GIL for a whole page, and a
        # worker still in Python would wait for all of it before it could start.
        querying = threading.Event()
        self._task = self._loop.run_in_executor(None, self._fetch, wanted, querying.set)
        querying.wait(_START_WAIT_SECONDS)
        # Read ahead and never taken (the caller stopped, or asked for something else): its
        # outcome, a failure included, is nobody's, and must not be reported as unretrieved.
        self._task.add_done_callback(_forget)

    async def take(self, wanted: PageRequest) -> FetchedPage | None:
        """The page read ahead for ``wanted`` if it may be served, else None (dropped)."""
        task, loop, request = self._task, self._loop, self._wanted
        self._task = self._wanted = self._loop = None
        if task is None or request != wanted or loop is not asyncio.get_running_loop():
            return None
        try:
            page = await task
        except Exception:
            return None  # read it again, in the caller's own request (its error, if any)
        if not self.servable(page, wanted):
            return None
        self.pages_served += 1
        return page

    @staticmethod
    def servable(page: FetchedPage, wanted: PageRequest) -> bool:
        """A full page: nothing committed since it was read can belong in it."""
        return page.size == wanted.limit


def _forget(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()

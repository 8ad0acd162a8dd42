"""Overlapping a rebuild's stages: pages read ahead, commits written behind, in other threads.

A rebuild alternates four stages per page: SQLite hands over the page, DuckDB parses and types
it, Python and numpy prepare it (grouping, per-batch aggregates, see ``prepared``) and fold it
into the states, SQLite writes the changed cells. SQLite and DuckDB release the GIL, so while
the engine prepares and folds page N a worker reads and evaluates page N+1
(:class:`PagesAhead`) and another writes the commit of page N-1 (:class:`CommitsBehind`): two
cores instead of one, as DuckDB's own baseline uses. Pages reach the engine one at a time and
in log order, at most two wait, and at most one commit is in flight; each commit still writes
its cells and its checkpoint in one transaction, so crash safety is unchanged.

Preparing a page is done by the engine's thread, not the worker, although it touches no state:
it holds the GIL most of the time, like the fold. On the 1,010,328-event bench log the worker
then has about 1.7 s of CPU per rebuild, almost all in SQLite and DuckDB with the GIL released,
and the engine's thread about 1.6 s of Python and numpy; with the preparing in the worker (2.4 s
against 0.9 s), the worker was the critical path and its Python parts waited for the GIL the
fold held. Alternating rebuilds at load 3-4: 0.78 of the wall time with state in memory, about
the same (0.95) with a commit every batch, where the engine's thread also serialises the cells.
"""

from __future__ import annotations

import contextlib
import queue
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Final

from facta.views.pipeline import Evaluated
from facta.views.source import LogReader, Page

QUEUE_PAGES: Final = 2
# While stages overlap, a thread holding the GIL is asked to hand it over after this long
# (Python's default: 5 ms).
SWITCH_SECONDS: Final = 0.0005
_WAIT_SECONDS: Final = 0.05
# A commit waits at most the store's busy timeout (10 s) per statement; this bounds the whole.
_COMMIT_TIMEOUT_SECONDS: Final = 300.0


_handoff_lock = threading.Lock()
_handoff_users = 0
_handoff_before = 0.0


@contextlib.contextmanager
def quick_handoff() -> Iterator[None]:
    """Run the block with a short GIL switch interval (:data:`SWITCH_SECONDS`), then restore it.

    The page thread gives the GIL up around every SQLite, DuckDB and large numpy call; each
    time it comes back it waits until the folding thread is asked to hand the GIL over — up to
    the switch interval, dozens of times per page. A shorter interval keeps the page thread,
    the critical path of a rebuild, from idling while the fold holds the GIL (about a tenth
    off a rebuild's time in alternating runs).

    The interval is the process's: engines of several views (``facta serve``) share it, and
    the one that was there before the first of them started is restored when the last ends.
    """
    global _handoff_users, _handoff_before
    with _handoff_lock:
        if _handoff_users == 0:
            _handoff_before = sys.getswitchinterval()
            sys.setswitchinterval(min(_handoff_before, SWITCH_SECONDS))
        _handoff_users += 1
    try:
        yield
    finally:
        with _handoff_lock:
            _handoff_users -= 1
            if _handoff_users == 0:
                sys.setswitchinterval(_handoff_before)


class PagesAhead:
    """A worker that reads and evaluates pages after a position, in order, until caught up.

    When a page finds the queue full (the engine is the slower stage, as when it commits
    every page), the worker first applies ``refine`` to it: work the engine would otherwise do
    itself, such as encoding the text columns. A worker that is the slower stage (state kept
    in memory) hands its pages over as they are: the engine does that work while it waits.
    """

    def __init__(
        self,
        reader: LogReader,
        evaluate: Callable[[Page], Evaluated | None],
        batch_size: int,
        refine: Callable[[Evaluated], Evaluated] | None = None,
    ) -> None:
        self._reader = reader
        self._evaluate = evaluate
        self._refine = refine
        self.refined = 0  # pages refined while the queue was full
        self._batch_size = batch_size
        self._queue: queue.Queue[tuple[Page, Evaluated | None] | BaseException] = queue.Queue(
            QUEUE_PAGES
        )
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, after: int, until: int | None) -> None:
        self._thread = threading.Thread(
            target=self._work, args=(after, until), name="facta-view-pages", daemon=True
        )
        self._thread.start()

    def _work(self, after: int, until: int | None) -> None:
        try:
            while not self._stopped.is_set():
                page = self._reader.read(after, self._batch_size, until=until)
                rows = page.events.num_rows
                evaluated = self._evaluate(page)
                if not self._offer((page, evaluated)):
                    # The engine is behind (the queue is full): spend the wait on work that
                    # would otherwise be its own.
                    if self._refine is not None and evaluated is not None:
                        evaluated = self._refine(evaluated)
                        self.refined += 1
                    if not self._put((page, evaluated)):
                        return
                if rows < self._batch_size:
                    return
                after = page.scanned
        except BaseException as exc:  # handed to the engine's thread, which raises it
            self._put(exc)

    def _offer(self, item: tuple[Page, Evaluated | None]) -> bool:
        """Queue ``item`` if there is room now."""
        try:
            self._queue.put_nowait(item)
            return True
        except queue.Full:
            return False

    def _put(self, item: tuple[Page, Evaluated | None] | BaseException) -> bool:
        while not self._stopped.is_set():
            try:
                self._queue.put(item, timeout=_WAIT_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def next(self) -> tuple[Page, Evaluated | None]:
        """The next page in log order (raises what the worker raised)."""
        while True:
            try:
                item = self._queue.get(timeout=_WAIT_SECONDS)
                break
            except queue.Empty:
                stopped = self._thread is None or not self._thread.is_alive()
                if stopped and self._queue.empty():
                    raise RuntimeError("the page reader stopped without a page") from None
        if isinstance(item, BaseException):
            raise item
        return item

    def stop(self) -> None:
        """Stop the worker and wait for it (the reader and pipeline are the engine's again)."""
        self._stopped.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None


class CommitsBehind:
    """One commit at a time written by a second thread; the next waits for the one before."""

    def __init__(self) -> None:
        self._executor: ThreadPoolExecutor | None = None
        self._inflight: tuple[Future[None], int] | None = None

    def submit(self, write: Callable[[], None], checkpoint: int) -> int | None:
        """Start ``write`` (which commits ``checkpoint``); return the checkpoint committed before
        it, if one was still in flight (raising what that commit raised)."""
        done = self.wait()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="facta-view-commit")
        self._inflight = (self._executor.submit(write), checkpoint)
        return done

    def wait(self) -> int | None:
        """Wait for the commit in flight; return its checkpoint (None if there was none)."""
        if self._inflight is None:
            return None
        future, checkpoint = self._inflight
        self._inflight = None
        future.result(timeout=_COMMIT_TIMEOUT_SECONDS)
        return checkpoint

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

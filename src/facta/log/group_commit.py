"""Group commit: many concurrent appends, one write transaction.

Callers (asyncio tasks, threads, other code in the process) put appends into one bounded queue.
Whoever finds the writer idle takes a batch and runs it: a synchronous caller runs it in its own
thread (no hand-off for a lone caller), otherwise the writer thread does. A backend supplies
``run_batch``, which must apply the batch's appends in order inside one transaction, commit, and
only then call ``acknowledge``.
"""

from __future__ import annotations

import _thread
import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from facta.log.errors import AppendTimeout, LogClosed, Overloaded
from facta.log.metrics import LogMetrics
from facta.log.request import PreparedAppend


class Pending:
    """One append waiting for its answer."""

    __slots__ = (
        "answered",
        "done",
        "error",
        "future",
        "loop",
        "request",
        "result",
        "submitted",
        "watchers",
    )

    def __init__(
        self,
        request: PreparedAppend,
        loop: asyncio.AbstractEventLoop | None = None,
        future: asyncio.Future[Any] | None = None,
    ) -> None:
        self.request = request
        self.loop = loop
        self.future = future
        # A thread's append: a lock held until the answer is in (cheaper than a threading.Event,
        # which builds a Condition per append).
        self.done: _thread.LockType | None = None
        self.result: Any = None
        self.error: BaseException | None = None
        self.submitted = time.perf_counter()
        # An async append's answer reached its loop (even if its caller stopped waiting), and
        # the futures of those waiting for that (see AppendTicket.wait_answered).
        self.answered = False
        self.watchers: list[asyncio.Future[None]] | None = None


class AppendTicket:
    """A handle on one async append of this process while it is in flight.

    Pass a fresh ticket as ``ticket=`` to ``append_many``; a later append that was decided on
    this one's outcome passes it in ``after=`` and is refused (``DependencyFailed``) unless this
    one was written before it, in commit order. So a process can queue a decision made on state
    that is still being committed, without waiting for that commit to return.
    """

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending: Pending | None = None

    def bind(self, pending: Pending) -> None:
        if self._pending is not None:
            raise ValueError("an AppendTicket can be given to one append only")
        self._pending = pending

    def in_flight(self) -> bool:
        """Queued to the writer and not answered yet (written, refused or failed, the answer
        reaching its event loop), whether or not its caller is still waiting for it. An append
        refused before it was queued (bad input) never was in flight."""
        return self._pending is not None and not self._pending.answered

    async def wait_answered(self, timeout: float) -> bool:
        """Wait (on the append's own event loop) until it is no longer :meth:`in_flight`, at
        most ``timeout`` seconds; whether it is. For an append whose caller was cancelled: it
        may still be written, and whoever retries the same command must not decide before
        knowing."""
        pending = self._pending
        if pending is None or pending.answered:
            return True
        watcher: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if pending.watchers is None:
            pending.watchers = []
        pending.watchers.append(watcher)
        try:
            await asyncio.wait_for(watcher, timeout)
        except TimeoutError:
            return False
        finally:
            if watcher in pending.watchers:
                pending.watchers.remove(watcher)
        return True

    def written(self) -> bool:
        """Applied by the writer (in this batch or an earlier committed one), not replayed."""
        pending = self._pending
        if pending is None or pending.error is not None or pending.result is None:
            return False
        return not pending.result.replayed


RunBatch = Callable[[list[Pending], Callable[[list[Pending]], None]], None]


class GroupCommit:
    def __init__(
        self,
        run_batch: RunBatch,
        *,
        queue_limit: int,
        max_batch_appends: int,
        max_batch_events: int,
        append_timeout: float,
        metrics: LogMetrics,
        name: str,
    ) -> None:
        self._run_batch = run_batch
        self._queue_limit = queue_limit
        self._max_appends = max_batch_appends
        self._max_events = max_batch_events
        self._timeout = append_timeout
        self._metrics = metrics
        self._queue: deque[Pending] = deque()
        self._cond = threading.Condition()
        self._running = False
        self._held = False
        self._holds = 0  # hold() blocks may overlap (a test's, the checkpointer's, stats)
        self._closed = False
        # Threads blocked on the condition for room in the queue or for the writer to go idle;
        # the runner wakes them only when there are some, so a lone caller costs no wake-ups.
        self._room_waiters = 0
        self._serve_waiting = False  # the writer thread waits on the condition
        self._idle_waiters = 0
        # One deadline timer per event loop instead of one per async append.
        self._deadlines: dict[asyncio.AbstractEventLoop, _Deadlines] = {}
        self._thread = threading.Thread(
            target=self._serve, name=f"facta-writer:{name}", daemon=True
        )
        self._thread.start()

    # -- submitting ---------------------------------------------------------------------------

    def submit(self, request: PreparedAppend) -> Any:
        """Append from a thread; returns the result or raises the append's error."""
        pending = Pending(request)
        done = pending.done = _thread.allocate_lock()
        done.acquire()
        deadline = time.monotonic() + self._timeout
        with self._cond:
            self._enqueue(pending, deadline)
            # A thread waiting to hold the writer goes first: a lone caller that took the lead
            # again right after each batch would keep it (and a checkpoint) waiting for good.
            lead = not self._running and not self._held and not self._idle_waiters
            batch = self._take() if lead else []
        if lead:
            self._execute(batch)
            with self._cond:
                self._running = False
                if self._queue or self._idle_waiters:
                    self._cond.notify_all()
        if not done.acquire(True, max(0.0, deadline - time.monotonic())):
            raise AppendTimeout(
                f"append got no answer within {self._timeout}s; it may or may not be written"
            )
        if pending.error is not None:
            raise pending.error
        return pending.result

    async def submit_async(
        self, request: PreparedAppend, ticket: AppendTicket | None = None
    ) -> Any:
        """Append from a task; returns the result or raises the append's error.

        A caller cancelled while it waits gets CancelledError, and its append goes on: it may
        still commit, and nothing reports it failed. Its future is cancelled, so the answer,
        when it comes, is dropped unseen (never a "Future exception was never retrieved").
        """
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        pending = Pending(request, loop, future)
        if ticket is not None:
            ticket.bind(pending)
        deadline = loop.time() + self._timeout
        with self._cond:
            full = len(self._queue) >= self._queue_limit
            if not full:
                self._enqueue(pending, time.monotonic() + self._timeout)
                if self._serve_waiting:  # else the writer finds the append when it looks
                    self._cond.notify_all()
        if full:  # rare: wait for room in a thread, not on the event loop
            try:
                await asyncio.to_thread(
                    self._enqueue_blocking, pending, time.monotonic() + self._timeout
                )
            except BaseException:
                # Cancelled while the thread may still enqueue it: drop the answer unseen.
                future.cancel()
                raise
        self._deadlines_of(loop).add(future, deadline)
        return await future

    def _deadlines_of(self, loop: asyncio.AbstractEventLoop) -> _Deadlines:
        try:
            return self._deadlines[loop]
        except KeyError:
            with self._cond:  # a new loop: forget the closed ones (rare, and under the lock)
                for old in [old for old in self._deadlines if old.is_closed()]:
                    del self._deadlines[old]
                deadlines = self._deadlines[loop] = _Deadlines(loop, self._timeout)
            return deadlines

    def _enqueue_blocking(self, pending: Pending, deadline: float) -> None:
        with self._cond:
            self._enqueue(pending, deadline)
            self._cond.notify_all()

    def _enqueue(self, pending: Pending, deadline: float) -> None:
        # Called with the lock held.
        while len(self._queue) >= self._queue_limit and not self._closed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Overloaded(
                    f"append queue stayed full ({self._queue_limit} appends) for {self._timeout}s"
                )
            self._room_waiters += 1
            try:
                self._cond.wait(remaining)
            finally:
                self._room_waiters -= 1
        if self._closed:
            raise LogClosed("the log is closed")
        self._queue.append(pending)
        depth = len(self._queue)
        self._metrics.queue_depth = depth
        if depth > self._metrics.queue_depth_max:
            self._metrics.queue_depth_max = depth

    # -- running ------------------------------------------------------------------------------

    def _take(self) -> list[Pending]:
        # Called with the lock held, by whoever becomes the runner.
        self._running = True
        batch: list[Pending] = []
        events = 0
        while self._queue and len(batch) < self._max_appends:
            size = self._queue[0].request.event_count
            if batch and events + size > self._max_events:
                break
            batch.append(self._queue.popleft())
            events += size
        self._metrics.queue_depth = len(self._queue)
        if self._room_waiters:
            self._cond.notify_all()  # room in the queue for blocked submitters
        return batch

    def _serve(self) -> None:
        while True:
            with self._cond:
                while not self._closed and (
                    not self._queue or self._running or self._held or self._idle_waiters
                ):
                    self._serve_waiting = True
                    try:
                        self._cond.wait()
                    finally:
                        self._serve_waiting = False
                if self._closed and not self._queue:
                    return
                if self._running or self._held or self._idle_waiters:
                    continue
                batch = self._take()
            try:
                self._execute(batch)
            finally:
                with self._cond:
                    self._running = False
                    self._cond.notify_all()

    def _execute(self, batch: list[Pending]) -> None:
        if not batch:
            return
        acknowledged = False

        def acknowledge(items: list[Pending]) -> None:
            nonlocal acknowledged
            acknowledged = True
            _acknowledge(items, self._metrics)

        try:
            self._run_batch(batch, acknowledge)
        except BaseException as exc:  # the backend could not even report per append
            for pending in batch:
                if pending.error is None and pending.result is None:
                    pending.error = exc
            if not acknowledged:
                _acknowledge(batch, self._metrics)
            if not isinstance(exc, Exception):
                raise
        else:
            if not acknowledged:
                _acknowledge(batch, self._metrics)

    # -- test hooks and shutdown --------------------------------------------------------------

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Keep the writer from taking batches while the block runs (a test hook; the log also
        uses it for short pauses). Blocks may overlap: the writer resumes after the last."""
        with self._cond:
            self._idle_waiters += 1
            try:
                while self._running:
                    self._cond.wait()
            finally:
                self._idle_waiters -= 1
            self._holds += 1
            self._held = True
        try:
            yield
        finally:
            with self._cond:
                self._holds -= 1
                self._held = self._holds > 0 and not self._closed
                self._cond.notify_all()

    def queued(self) -> int:
        with self._cond:
            return len(self._queue)

    def close(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._closed = True
            self._held = False
            self._cond.notify_all()
        self._thread.join(timeout)


def _acknowledge(batch: list[Pending], metrics: LogMetrics) -> None:
    now = time.perf_counter()
    by_loop: dict[asyncio.AbstractEventLoop, list[Pending]] = {}
    for pending in batch:
        metrics.append_latency_us.record((now - pending.submitted) * 1e6)
        if pending.loop is not None:
            by_loop.setdefault(pending.loop, []).append(pending)
        elif pending.done is not None:
            with contextlib.suppress(RuntimeError):  # answered already
                pending.done.release()
    for loop, items in by_loop.items():
        with contextlib.suppress(RuntimeError):  # loop closed: its callers are gone
            loop.call_soon_threadsafe(_resolve_futures, items)


class _Deadlines:
    """The unanswered async appends of one event loop, oldest first, and one timer that fails
    those past their deadline. Every append has the same timeout, so the oldest unanswered one
    is always the next to expire; answered ones are dropped from the front as appends arrive."""

    __slots__ = ("_loop", "_queue", "_timeout", "_timer")

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self._loop = loop
        self._timeout = timeout
        self._queue: deque[tuple[float, asyncio.Future[Any]]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def add(self, future: asyncio.Future[Any], deadline: float) -> None:
        queue = self._queue
        while queue and queue[0][1].done():
            queue.popleft()
        queue.append((deadline, future))
        if self._timer is None:
            self._timer = self._loop.call_at(queue[0][0], self._expire_due)

    def _expire_due(self) -> None:
        self._timer = None
        queue = self._queue
        now = self._loop.time()
        while queue:
            deadline, future = queue[0]
            if not future.done():
                if deadline > now:
                    break
                future.set_exception(
                    AppendTimeout(
                        f"append got no answer within {self._timeout}s; "
                        "it may or may not be written"
                    )
                )
            queue.popleft()
        if queue:
            self._timer = self._loop.call_at(queue[0][0], self._expire_due)


def _resolve_futures(items: list[Pending]) -> None:
    for pending in items:
        pending.answered = True
        if pending.watchers:
            for watcher in pending.watchers:
                if not watcher.done():
                    watcher.set_result(None)
        future = pending.future
        if future is None or future.done():
            continue
        if pending.error is not None:
            future.set_exception(pending.error)
        else:
            future.set_result(pending.result)

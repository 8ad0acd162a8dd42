"""The server's side of the views: reader threads, maintainers, and who hears of checkpoints.

Reading a view decodes cells and merges sketches: CPU work that must not run on the event loop.
Queries run on a small pool of reader threads, each with its own connection to the views file
(and its own decoded-cell cache). Checkpoints reach the loop two ways: the in-process
maintainers report each commit at once, and a poll of the views file every ``poll`` seconds
catches commits of other processes, rebuilds and drops by ``facta apply``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from facta.server.maintainers import Maintainers
from facta.server.problems import ApiError, unavailable
from facta.views.store import Generation, ViewStore, views_path

T = TypeVar("T")
_log = logging.getLogger("facta.server")
Listener = Callable[[str, "ViewMark | None"], None]


@dataclass(frozen=True, slots=True)
class ViewMark:
    """What identifies a view's committed state: generation, definition and checkpoint."""

    generation: int
    created_at: str
    definition_hash: str
    checkpoint: int

    @staticmethod
    def of(info: Generation) -> ViewMark:
        return ViewMark(info.generation, info.created_at, info.definition_hash, info.checkpoint)


class ViewReaders:
    """Threads that read the views file, each with its own :class:`ViewStore`."""

    def __init__(self, path: str, workers: int = 2) -> None:
        self.path = path
        self._local = threading.local()
        self._stores: list[ViewStore] = []
        self._guard = threading.Lock()
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="facta-view-reader")

    def _store(self) -> ViewStore:
        store: ViewStore | None = getattr(self._local, "store", None)
        if store is None:
            store = self._local.store = ViewStore(self.path)
            with self._guard:
                self._stores.append(store)
        return store

    async def call(self, work: Callable[[ViewStore], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: work(self._store()))

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        with self._guard:
            for store in self._stores:
                with contextlib.suppress(Exception):
                    store.close()
            self._stores.clear()


class ViewService:
    """Views for the routes: read them, wait for a position, hear when they move."""

    def __init__(self, log_path: str, project: Path | None, *, poll: float = 0.2) -> None:
        self.log_path = log_path
        self.path = views_path(log_path)
        self.project = project
        self.poll = poll
        self.readers = ViewReaders(self.path)
        self.maintainers = (
            Maintainers(log_path, project, self._committed) if project is not None else None
        )
        self.marks: dict[str, ViewMark] = {}
        self.listeners: list[Listener] = []
        self._changed = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._reconciled = 0.0

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self._refresh()
        self._task = asyncio.create_task(self._watch(), name="facta-view-watch")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.maintainers is not None:
            await asyncio.to_thread(self.maintainers.stop)
        await asyncio.to_thread(self.readers.close)

    def wake(self) -> None:
        """New events are in the log (called on the loop by the live feed)."""
        if self.maintainers is not None:
            self.maintainers.wake()

    # -- hearing about checkpoints ---------------------------------------------------------------

    def _committed(self, view: str, checkpoint: int) -> None:
        """A maintainer thread committed: tell the loop (the store is re-read there)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._kick, view)

    def _kick(self, view: str) -> None:
        # Listeners hear of the commit at once (a rebuild still shows as a new mark when the
        # views file is re-read just after).
        mark = self.marks.get(view)
        if mark is not None:
            self._tell(view, mark)
        self._changed.set()

    async def _watch(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), self.poll)
            self._changed.clear()
            try:
                await self._refresh()
            except Exception:
                _log.exception("reading the views file failed; retrying")
                await asyncio.sleep(self.poll)

    async def _refresh(self) -> None:
        maintainers = self.maintainers
        if maintainers is not None and time.monotonic() - self._reconciled >= 0.5:
            self._reconciled = time.monotonic()
            await asyncio.to_thread(maintainers.reconcile)
        infos = await self.readers.call(lambda store: store.views())
        seen = {info.view: ViewMark.of(info) for info in infos}
        for name, mark in seen.items():
            if self.marks.get(name) != mark:
                self.marks[name] = mark
                self._tell(name, mark)
        for name in list(self.marks):
            if name not in seen:
                del self.marks[name]
                self._tell(name, None)

    def _tell(self, view: str, mark: ViewMark | None) -> None:
        for listener in tuple(self.listeners):
            try:
                listener(view, mark)
            except Exception:
                _log.exception("a view listener failed")

    # -- reading ---------------------------------------------------------------------------------

    def known(self, view: str) -> bool:
        """Built, or declared in the project (and so being built)."""
        if view in self.marks:
            return True
        return self.maintainers is not None and self.maintainers.declared(view) is not None

    async def wait_for(self, view: str, position: int, timeout: float) -> None:
        """Until ``view`` has committed ``position``; 504 after ``timeout`` seconds."""
        reached = await self._wait(view, position, timeout)
        if reached is None or reached < position:
            raise ApiError(
                504,
                "min_position_timeout",
                f"view {view!r} had applied position {reached or 0}, not {position}, after "
                f"{timeout:g} s",
                view=view,
                position=reached or 0,
                min_position=position,
            )

    async def wait_built(self, view: str, timeout: float, retry_after: int) -> None:
        """Until a view declared in the project has committed its first build; 503 (with
        ``Retry-After``) after ``timeout`` seconds."""
        if await self._wait(view, 0, timeout) is None:
            raise unavailable(
                "view_not_built",
                f"view {view!r} is declared and its first build has committed nothing yet "
                f"after {timeout:g} s",
                retry_after,
                view=view,
            )

    async def _wait(self, view: str, position: int, timeout: float) -> int | None:
        """The view's committed position once it reaches ``position`` or ``timeout`` passes
        (None: not built at all)."""
        deadline = time.monotonic() + timeout
        while True:
            mark = await self.readers.call(lambda store: store.current(view))
            reached = None if mark is None else mark.checkpoint
            left = deadline - time.monotonic()
            if (reached is not None and reached >= position) or left <= 0:
                return reached
            await asyncio.sleep(min(0.01, left))

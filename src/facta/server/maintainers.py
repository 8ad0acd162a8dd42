"""The view maintainers of ``facta serve --project``: one thread per view, beside the event loop.

Each maintainer folds the log into its view with a :class:`~facta.views.ViewEngine` in its own
thread (with its own connections), so a rebuild of a million events never runs on the event
loop: the loop only hears "view V committed checkpoint P" through :attr:`on_commit`.

What is maintained follows the project file and the views file:

- every view declared in the project is maintained; one not built yet is built from the start
  of the log (its first generation), in the server;
- the definition maintained is the one *applied* (stored with the view's generation), so a
  changed ``facta.toml`` changes nothing until ``facta apply``;
- ``facta apply`` asks for a view with a handover request (see
  :meth:`facta.views.ViewStore.lock`): the maintainer commits, lets go between two batches,
  waits until apply has finished with the view, and resumes with whatever generation is now
  current (a rebuilt one, or none if it was dropped). The project file is re-read when it
  changes; :meth:`reconcile` runs every ``poll`` seconds, so an apply is picked up within
  about a second.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from facta.views.compile import CompiledView, compile_view
from facta.views.definition import DefinitionError, ViewDefinition, load_views
from facta.views.engine import (
    DefinitionChanged,
    EngineSettings,
    ViewEngine,
    poll_wait,
)
from facta.views.locks import ViewLocked
from facta.views.store import ViewStore, views_path

_log = logging.getLogger("facta.server")

CommitListener = Callable[[str, int], None]


@dataclasses.dataclass(slots=True)
class MaintainerStatus:
    """What GET /views reports about the maintainer of one view."""

    state: str = "starting"  # starting, building, running, handed over, waiting, failed
    checkpoint: int = 0
    error: str | None = None


class Maintainer:
    """Keeps one view up to date in a thread until stopped or the view is dropped."""

    def __init__(
        self,
        log_path: str,
        name: str,
        declared: Callable[[str], CompiledView | None],
        on_commit: CommitListener,
        settings: EngineSettings,
    ) -> None:
        self.log_path = log_path
        self.name = name
        self.status = MaintainerStatus()
        self.wake = threading.Event()
        self._declared = declared
        self._on_commit = on_commit
        self._settings = settings
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"facta-view-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self.wake.set()
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        store = ViewStore(views_path(self.log_path))
        try:
            while not self._stop.is_set():
                engine = self._open(store)
                if engine is None:
                    if store.current(self.name) is None and self._declared(self.name) is None:
                        self.status.state = "dropped"
                        return
                    self._stop.wait(0.2)
                    continue
                try:
                    self._follow(engine, store)
                finally:
                    engine.close()
        except Exception as exc:  # the view cannot go on: report it, keep the server up
            _log.exception("the maintainer of view %r stopped", self.name)
            self.status.state = "failed"
            self.status.error = f"{type(exc).__name__}: {exc}"
        finally:
            store.close()

    def _open(self, store: ViewStore) -> ViewEngine | None:
        """Lock the view and load its applied definition; None while someone else has it."""
        if store.handover_requested(self.name):
            self.status.state = "handed over"
            return None
        current = store.current(self.name)
        if current is None:
            view = self._declared(self.name)
            if view is None:
                return None
        else:
            view = compile_view(ViewDefinition.model_validate(current.definition))
        try:
            engine = ViewEngine(self.log_path, view, store, self._settings).open()
        except ViewLocked as exc:
            self.status.state = "waiting"
            self.status.error = str(exc)
            return None
        except DefinitionChanged:
            # Rebuilt by `facta apply` between reading the definition and taking the lock.
            return None
        self.status.error = None
        self.status.checkpoint = engine.checkpoint
        if current is None:
            self._on_commit(self.name, engine.checkpoint)
        return engine

    def _follow(self, engine: ViewEngine, store: ViewStore) -> None:
        """Fold batch by batch; between batches, honour stop and handover requests."""
        active = time.monotonic()
        while not self._stop.is_set():
            if store.handover_requested(self.name):
                if engine.checkpoint > engine.committed:
                    engine.commit()
                    self._committed(engine)
                self.status.state = "handed over"
                return
            committed = engine.committed
            head = engine.head()
            self.status.state = "building" if head - engine.checkpoint > 50_000 else "running"
            folded = engine.step()
            if folded < engine.settings.batch_size and engine.checkpoint > engine.committed:
                engine.commit()
            if engine.committed != committed:
                self._committed(engine)
            if folded:
                active = time.monotonic()
            else:
                self.status.state = "running"
                self._idle(engine, active)

    def _idle(self, engine: ViewEngine, active: float) -> None:
        """Wait up to 50 ms (then look for handover requests again) for a commit to the log: the
        server's log feed wakes this thread, and ``PRAGMA data_version`` is polled meanwhile
        (every 1 ms, 20 ms after a second without commits), which notices another process's
        commit sooner than the feed's own poll."""
        poll = poll_wait(active)
        until = time.monotonic() + 0.05
        while time.monotonic() < until and not self._stop.is_set():
            if self.wake.wait(poll) or engine.log_changed():
                break
        self.wake.clear()

    def _committed(self, engine: ViewEngine) -> None:
        self.status.checkpoint = engine.committed
        self._on_commit(self.name, engine.committed)


class Maintainers:
    """The maintainers of a project's views, reconciled with the project file and the store."""

    def __init__(
        self,
        log_path: str | os.PathLike[str],
        project: Path | None,
        on_commit: CommitListener,
        settings: EngineSettings | None = None,
    ) -> None:
        self.log_path = os.fspath(log_path)
        self.project = project
        self.on_commit = on_commit
        self.settings = settings or EngineSettings(commit_every_ms=250.0)
        self.running: dict[str, Maintainer] = {}
        self.project_error: str | None = None
        self._declared: dict[str, CompiledView] = {}
        self._mtime: float | None = None
        self._lock = threading.Lock()

    def declared(self, name: str) -> CompiledView | None:
        with self._lock:
            return self._declared.get(name)

    def declared_names(self) -> list[str]:
        with self._lock:
            return list(self._declared)

    def _reload_project(self) -> None:
        if self.project is None:
            return
        try:
            mtime = self.project.stat().st_mtime
        except OSError as exc:
            self.project_error = f"cannot read the project file {self.project}: {exc}"
            return
        if mtime == self._mtime:
            return
        try:
            views = {v.name: compile_view(v) for v in load_views(self.project)}
        except (DefinitionError, OSError, ValueError) as exc:
            # Keep maintaining what was declared before; report the problem in GET /views.
            self.project_error = f"{self.project}: {exc}"
            self._mtime = mtime
            return
        with self._lock:
            self._declared = views
        self.project_error = None
        self._mtime = mtime

    def reconcile(self) -> None:
        """Start maintainers for declared views; forget the ones whose view is gone.

        Runs in a worker thread (it reads the project file).
        """
        self._reload_project()
        for name in self.declared_names():
            maintainer = self.running.get(name)
            if maintainer is None or (
                not maintainer.alive and maintainer.status.state == "dropped"
            ):
                maintainer = Maintainer(
                    self.log_path, name, self.declared, self.on_commit, self.settings
                )
                self.running[name] = maintainer
                maintainer.start()
        for name, maintainer in list(self.running.items()):
            if not maintainer.alive and maintainer.status.state == "dropped":
                del self.running[name]

    def wake(self) -> None:
        """New events were committed: let idle maintainers fold them now."""
        for maintainer in self.running.values():
            maintainer.wake.set()

    def stop(self) -> None:
        for maintainer in self.running.values():
            maintainer._stop.set()
            maintainer.wake.set()
        for maintainer in self.running.values():
            maintainer.stop()

    def status(self, name: str) -> MaintainerStatus | None:
        maintainer = self.running.get(name)
        return None if maintainer is None else maintainer.status

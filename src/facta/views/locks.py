"""One maintainer per view: the lock rows of the views file, and handover requests.

A maintainer holds its view by a row in ``view_locks`` (holder, pid, host). Taking a view another
live process holds raises :class:`ViewLocked` naming the holder; a row left by a process that no
longer runs on this host (killed, crashed) is taken over. ``facta apply`` asks a live holder to
let go by writing a ``view_handover`` row, which ``facta serve`` honours between batches.
Whether a process still runs is asked of the operating system through psutil, which works the
same on Linux, macOS and Windows (``os.kill(pid, 0)`` would *terminate* the process on Windows).
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from datetime import UTC, datetime
from typing import Any

import psutil


class ViewLocked(RuntimeError):
    """Another live process maintains this view."""

    def __init__(self, view: str, holder: str) -> None:
        super().__init__(f"view {view!r} is already maintained by {holder}")
        self.view = view
        self.holder = holder


def holder_name() -> str:
    return f"pid {os.getpid()} on {socket.gethostname()}"


class ViewLocks:
    """The lock part of :class:`~facta.views.store.ViewStore` (which provides the connection)."""

    _conn: Any
    # How long lock() waits for a live holder that honours handover requests (facta serve).
    lock_wait: float = 0.0

    def _writing(self) -> contextlib.AbstractContextManager[None]:
        raise NotImplementedError

    def lock(self, view: str) -> None:
        """Become the maintainer of ``view``, or raise :class:`ViewLocked` naming the holder.

        A lock left by a process that no longer runs (killed, crashed) on this host is taken over.
        With ``lock_wait`` > 0, a live holder is asked to hand the view over (a ``view_handover``
        row, which ``facta serve`` honours between batches) and waited for that long.
        """
        deadline = time.monotonic() + self.lock_wait
        requested = False
        try:
            while True:
                try:
                    self._take_lock(view)
                    return
                except ViewLocked:
                    if time.monotonic() >= deadline:
                        raise
                if not requested:
                    with self._writing():
                        self._conn.execute(
                            "INSERT OR REPLACE INTO view_handover(view, requester, requested_at) "
                            "VALUES (?, ?, ?)",
                            (view, holder_name(), datetime.now(UTC).isoformat()),
                        )
                    requested = True
                time.sleep(0.05)
        finally:
            if requested:
                with self._writing():
                    self._conn.execute("DELETE FROM view_handover WHERE view = ?", (view,))

    def handover_requested(self, view: str) -> bool:
        """Whether another process asked the maintainer of ``view`` to let go of it."""
        row = self._conn.execute("SELECT 1 FROM view_handover WHERE view = ?", (view,)).fetchone()
        return row is not None

    def _take_lock(self, view: str) -> None:
        host = socket.gethostname()
        with self._writing():
            row = self._conn.execute(
                "SELECT holder, pid, host FROM view_locks WHERE view = ?", (view,)
            ).fetchone()
            held_elsewhere = row is not None and int(row[1]) != os.getpid()
            if held_elsewhere and (row[2] != host or _alive(int(row[1]))):
                raise ViewLocked(view, str(row[0]))
            self._conn.execute(
                "INSERT INTO view_locks(view, holder, pid, host, acquired_at) VALUES (?,?,?,?,?) "
                "ON CONFLICT(view) DO UPDATE SET holder = excluded.holder, pid = excluded.pid, "
                "host = excluded.host, acquired_at = excluded.acquired_at",
                (view, holder_name(), os.getpid(), host, datetime.now(UTC).isoformat()),
            )

    def unlock(self, view: str) -> None:
        with self._writing():
            self._conn.execute(
                "DELETE FROM view_locks WHERE view = ? AND pid = ? AND host = ?",
                (view, os.getpid(), socket.gethostname()),
            )

    def holder(self, view: str) -> str | None:
        row = self._conn.execute("SELECT holder FROM view_locks WHERE view = ?", (view,)).fetchone()
        return None if row is None else str(row[0])


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (on this host), without sending it anything."""
    return bool(psutil.pid_exists(pid))

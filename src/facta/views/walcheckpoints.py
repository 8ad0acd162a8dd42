"""WAL checkpoints of the views file, in a thread of their own instead of in a commit.

SQLite's automatic checkpoint runs inside the commit that pushes the WAL past 1,000 pages: it
copies the WAL into the database file and syncs it, and that commit waits. A live view commits
every few milliseconds, so every fifth commit or so paid a checkpoint (its time to be visible
doubled at the 99th percentile). Here the writer's commits only note the WAL's size; past
``threshold_bytes`` a background thread runs a PASSIVE checkpoint on its own connection, which
never blocks the writer. Once a checkpoint has copied the whole WAL, SQLite writes the next
commit from the WAL's start, so the file stays bounded. If readers keep the checkpoints from
finishing and the WAL reaches ``limit_bytes``, the writer checkpoints itself, as SQLite would.

Why 32 MB and not SQLite's 4 MB: a live commit rewrites the same few dozen pages (a group's
all-time, month and week cells) again and again, about 37 pages of 16 KB per commit. A
checkpoint copies each page once, however many versions of it the WAL holds, so a larger WAL
copies and syncs far less for the same commits: at 100 live commits a second, checkpoints ran
about 21 times a second and kept the checkpointer busy 15-19 % of the time with 4 MB, 4 times
a second and 6-7 % with 32 MB; a view commit made while a checkpoint ran took 26-43 % longer
(medians). 2,048 frames of 16 KB still fit one block of the WAL index, so a reader's page
look-up costs the same.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Final

import apsw

THRESHOLD_BYTES = 32 * 1024 * 1024  # SQLite's own default is 4 MB (1,000 pages of 4 KB)
LIMIT_BYTES: Final = 64 * 1024 * 1024


class BackgroundCheckpoints:
    """Attach to the writing connection of a WAL database; :meth:`close` before closing it."""

    def __init__(
        self,
        path: str,
        writer: Any,
        threshold_bytes: int | None = None,
        limit_bytes: int = LIMIT_BYTES,
    ) -> None:
        if threshold_bytes is None:
            threshold_bytes = THRESHOLD_BYTES  # read here, so a test may lower it
        self.path = path
        page_size = int(writer.execute("PRAGMA page_size").fetchone()[0])
        self.threshold_pages = max(1, threshold_bytes // page_size)
        self.limit_pages = max(self.threshold_pages + 1, limit_bytes // page_size)
        self.done = 0  # checkpoints run in the background
        self.inline = 0  # checkpoints the writer ran itself (the WAL reached limit_pages)
        self._wanted = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        writer.set_wal_hook(self._on_commit)  # replaces SQLite's automatic checkpoint

    def _on_commit(self, conn: Any, name: str, pages: int) -> int:
        if pages >= self.limit_pages:
            try:
                conn.wal_checkpoint(name, apsw.SQLITE_CHECKPOINT_PASSIVE)
                self.inline += 1
            except apsw.BusyError:
                pass  # the background checkpoint is running: it will empty the WAL
        elif pages >= self.threshold_pages:
            self._start()
            self._wanted.set()
        return apsw.SQLITE_OK

    def _start(self) -> None:
        with self._lock:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(
                    target=self._run, name="facta-views-checkpointer", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        conn: Any = None
        try:
            while not self._closed:
                if not self._wanted.wait(0.5):
                    continue
                self._wanted.clear()
                if self._closed:
                    return
                if conn is None:
                    conn = apsw.Connection(self.path, flags=apsw.SQLITE_OPEN_READWRITE)
                    conn.set_busy_timeout(100)
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.done += 1
                except apsw.Error:
                    self._wanted.set()  # busy: try again after a pause
                    time.sleep(0.05)
        finally:
            if conn is not None:
                conn.close()

    def close(self, timeout: float = 0.2) -> None:
        with self._lock:
            self._closed = True
            thread = self._thread
        self._wanted.set()
        if thread is not None:
            thread.join(timeout)

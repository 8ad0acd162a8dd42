"""Waking subscribers when the log grows, whether the commit came from this process or another.

Commits of this process signal directly. Commits of other processes are noticed by polling
``PRAGMA data_version`` on a dedicated connection, only while someone is waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any


class CommitSignal:
    """A broadcast: "the log may have grown". Subscribers re-read after each signal."""

    def __init__(self, start_poller: Callable[[], None] | None = None) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Event]] = {}
        self._start_poller = start_poller

    def notify(self) -> None:
        with self._lock:
            waiters = list(self._waiters.values())
        for loop, event in waiters:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)

    def register(self, event: asyncio.Event) -> int:
        loop = asyncio.get_running_loop()
        with self._lock:
            token = id(event)
            self._waiters[token] = (loop, event)
        if self._start_poller is not None:
            self._start_poller()
        return token

    def unregister(self, token: int) -> None:
        with self._lock:
            self._waiters.pop(token, None)

    @property
    def listeners(self) -> int:
        with self._lock:
            return len(self._waiters)


class DataVersionPoller:
    """Polls a change counter while the signal has listeners; stops itself when it has none."""

    def __init__(
        self,
        signal: CommitSignal,
        read_version: Callable[[], Any],
        interval: float,
        close_reader: Callable[[], None],
    ) -> None:
        self._signal = signal
        self._read_version = read_version
        self._interval = interval
        self._close_reader = close_reader
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def ensure_running(self) -> None:
        with self._lock:
            if self._thread is not None or self._stop.is_set():
                return
            self._thread = threading.Thread(target=self._run, name="facta-poller", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        last = self._read_version()
        idle_rounds = 0
        while True:
            # A plain sleep costs about half the CPU of Event.wait(timeout), which matters at
            # 200 wake-ups a second; close() waits at most one interval longer for the thread.
            time.sleep(self._interval)
            if self._stop.is_set():
                break
            current = self._read_version()
            if current != last:
                last = current
                self._signal.notify()
            if self._signal.listeners:
                idle_rounds = 0
                continue
            idle_rounds += 1
            if idle_rounds * self._interval > 1.0:
                with self._lock:  # a listener registering now either sees None or is seen
                    if self._signal.listeners == 0:
                        self._thread = None
                        return
                idle_rounds = 0
        with self._lock:
            self._thread = None

    def close(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(2.0)
        self._close_reader()

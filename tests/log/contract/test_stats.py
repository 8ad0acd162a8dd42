"""Observing a log while it is written: stats() from several threads never hangs, never fails,
and never makes an append fail."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

from facta.log import LogConfig, NewEvent

from .backends import Backend, ContractLog
from .conftest import OpenLog

APPENDERS = 4
APPENDS = 300
WATCHERS = 4


def test_stats_from_several_threads_while_threads_append(log: ContractLog) -> None:
    stop = threading.Event()
    errors: Counter[str] = Counter()
    calls = Counter[int]()

    def watch(n: int) -> None:
        while not stop.is_set():
            try:
                log.stats_sync()
                calls[n] += 1
            except Exception as exc:
                errors[f"stats: {exc!r}"] += 1

    def append(n: int) -> None:
        for i in range(APPENDS):
            try:
                log.append_sync(f"s-{n}", [NewEvent(type="T", data={"i": i})])
            except Exception as exc:
                errors[f"append: {exc!r}"] += 1

    watchers = [threading.Thread(target=watch, args=(n,), daemon=True) for n in range(WATCHERS)]
    appenders = [threading.Thread(target=append, args=(n,), daemon=True) for n in range(APPENDERS)]
    for thread in watchers:
        thread.start()
    time.sleep(0.3)  # the watchers alone first, then against the appenders
    for thread in appenders:
        thread.start()
    for thread in appenders:
        thread.join(60)
    stop.set()
    for thread in watchers:
        thread.join(10)
    hung = [t.name for t in watchers + appenders if t.is_alive()]
    assert not hung, f"threads never returned: {hung}"
    assert not errors, errors
    assert log.head_sync() == APPENDERS * APPENDS
    # stats() waits for a gap between write batches, so under this load it may get in rarely.
    assert all(calls[n] >= 1 for n in range(WATCHERS)), f"stats ran only {dict(calls)} times"


def test_stats_waiting_for_a_running_append_returns_when_it_ends(
    backend: Backend, open_log: OpenLog
) -> None:
    """A stats() call that arrives while an append is being written waits for it, then
    returns, even when no other append follows to wake it."""
    log = open_log(config=LogConfig(lock_timeout=10.0))
    results: list[object] = []
    appender = threading.Thread(
        target=lambda: results.append(log.append_sync("s", [NewEvent(type="T")])), daemon=True
    )
    watcher = threading.Thread(target=lambda: results.append(log.stats_sync()), daemon=True)
    with backend.hold_write_lock(Path(log.path)):
        appender.start()  # its write now waits for the lock held by another process
        time.sleep(0.3)
        watcher.start()
        time.sleep(0.3)
        overlapped = appender.is_alive() and watcher.is_alive()
    appender.join(10)
    watcher.join(10)
    assert overlapped, "stats did not run while the append waited: nothing was tested"
    assert not appender.is_alive(), "the append never returned"
    assert not watcher.is_alive(), "stats never returned after the append it waited for ended"
    assert len(results) == 2 and log.head_sync() == 1

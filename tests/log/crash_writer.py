"""A writer process for the crash test: appends from threads and asyncio tasks until killed.

    python -m tests.log.crash_writer LOG JOURNAL NAME DURABILITY SEED [VARIANT]

VARIANT names a log class of ``broken_logs.VARIANTS`` (default ``correct``).

Before submitting an append it writes ``{"start": spec}`` to JOURNAL; only after the append
returned does it write ``{"ack": [id, result]}``. Each line is one ``os.write`` on an
``O_APPEND`` descriptor, so the journal holds what the writers knew when the process died (a
kill in the middle of a long write can only tear the last line, which the reader drops).
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import threading
import time
from typing import Any

import msgspec

from facta.log import AppendResult, Durability, LogConfig, SqliteLog
from tests.log.broken_logs import VARIANTS
from tests.log.durability_check import AppendPlanner, AppendSpec

THREADS = 3
TASKS = 3
LIFETIME = 30.0  # seconds; the parent kills the process long before


class Journal:
    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._lock = threading.Lock()
        self._encoder = msgspec.json.Encoder()

    def write(self, entry: dict[str, Any]) -> None:
        line = self._encoder.encode(entry) + b"\n"
        with self._lock:
            os.write(self._fd, line)

    def started(self, spec: AppendSpec) -> None:
        self.write({"start": spec})

    def acked(self, spec: AppendSpec, result: AppendResult) -> None:
        self.write({"ack": [spec.id, result]})


def write_in_thread(log: SqliteLog, journal: Journal, planner: AppendPlanner, end: float) -> None:
    while time.monotonic() < end:
        spec = planner.next()
        journal.started(spec)
        result = spec.submit_sync(log)
        journal.acked(spec, result)


async def write_in_task(
    log: SqliteLog, journal: Journal, planner: AppendPlanner, end: float
) -> None:
    while time.monotonic() < end:
        spec = planner.next()
        journal.started(spec)
        result = await spec.submit(log)
        journal.acked(spec, result)


async def write_in_tasks(log: SqliteLog, journal: Journal, planners: list[AppendPlanner]) -> None:
    end = time.monotonic() + LIFETIME
    await asyncio.gather(*(write_in_task(log, journal, p, end) for p in planners))


def main(argv: list[str]) -> int:
    log_path, journal_path, name, durability, seed, *rest = argv
    log_class = VARIANTS[rest[0] if rest else "correct"]
    rng = random.Random(int(seed))
    journal = Journal(journal_path)
    planners = [
        AppendPlanner(f"{name}-w{i}", random.Random(rng.random())) for i in range(THREADS + TASKS)
    ]
    errors: list[BaseException] = []
    mode: Durability = "normal" if durability == "normal" else "strict"
    # small WAL thresholds: background checkpoints run, and get killed, too
    config = LogConfig(durability=mode, wal_checkpoint_bytes=256 * 1024, wal_max_bytes=1024 * 1024)
    log = log_class(log_path, config)
    end = time.monotonic() + LIFETIME

    def guarded(planner: AppendPlanner) -> None:
        try:
            write_in_thread(log, journal, planner, end)
        except BaseException as exc:
            errors.append(exc)
            journal.write({"error": repr(exc)})

    threads = [threading.Thread(target=guarded, args=(p,)) for p in planners[:THREADS]]
    for thread in threads:
        thread.start()
    try:
        asyncio.run(write_in_tasks(log, journal, planners[THREADS:]))
    except BaseException as exc:
        errors.append(exc)
        journal.write({"error": repr(exc)})
    for thread in threads:
        thread.join()
    log.close()
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

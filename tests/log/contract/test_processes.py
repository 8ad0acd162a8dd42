"""Two processes append to the same streams and follow each other's commits."""

from __future__ import annotations

import multiprocessing
import queue
import statistics
from pathlib import Path
from typing import Any

import pytest

from .backends import Backend
from .processes import append_and_follow

STREAMS = [f"shared-{n}" for n in range(5)]
APPENDS = 150
SOLO = 40


def test_two_processes_race_on_five_streams_and_see_each_other(
    backend: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "shared.db"
    backend.open(path, None, None).close()  # create the log before the race
    spawn = multiprocessing.get_context("spawn")
    barrier = spawn.Barrier(2)
    results: Any = spawn.Queue()
    workers = [
        spawn.Process(
            target=append_and_follow,
            args=(backend.name, str(path), n, APPENDS, SOLO, STREAMS, barrier, results),
        )
        for n in (0, 1)
    ]
    for worker in workers:
        worker.start()
    reports: dict[int, dict[str, Any]] = {}
    try:
        for _ in workers:
            report = results.get(timeout=120)
            reports[report["worker"]] = report
    except queue.Empty:
        pytest.fail(f"workers did not report; exit codes {[w.exitcode for w in workers]}")
    finally:
        for worker in workers:
            worker.join(30)
            if worker.is_alive():
                worker.kill()
    assert [w.exitcode for w in workers] == [0, 0]

    log = backend.open(path, None, None)
    try:
        events = log.read_all_sync(limit=10_000)
        versions = {s: log.stream_version_sync(s) for s in STREAMS}
    finally:
        log.close()
    head = len(events)
    attempts = [(n, *a) for n in (0, 1) for a in reports[n]["attempts"]]
    successes = [a for a in attempts if a[3]]
    conflicts = [a for a in attempts if not a[3]]
    assert len(attempts) == 2 * (APPENDS + SOLO)
    assert all(a[3] for a in attempts if a[6]), "an append with no competitor conflicted"
    assert [e.position for e in events] == list(range(1, head + 1))
    assert len(successes) == head, "acknowledged appends and events in the log differ"
    for stream in STREAMS:
        won = [a for a in successes if a[1] == stream]
        assert len(won) == versions[stream], f"{stream}: {len(won)} successes, v{versions[stream]}"
        expected = sorted(a[2] for a in won)
        assert expected == list(range(versions[stream])), f"{stream}: expectations {expected}"
    by_position = {e.position: e for e in events}
    for worker, stream, expected, _, position, _, _ in successes:
        event = by_position[position]
        assert (event.stream, event.version, event.data["worker"]) == (stream, expected + 1, worker)
    assert conflicts, "no append ever conflicted: the race did not happen"
    for _, stream, expected, _, actual, _, _ in conflicts:
        assert actual != expected and 0 <= actual <= versions[stream]

    # Each subscriber got the whole log, in order; time the other process's events.
    # Delay: from the writer's answer to the other process's receipt (clamped at 0: the
    # subscriber may see the commit before the writer's own call returns).
    delays: dict[bool, list[float]] = {False: [], True: []}
    for reader, writer in ((0, 1), (1, 0)):
        received = reports[reader]["received"]
        assert [p for p, _ in received] == list(range(1, head + 1)), f"subscriber {reader}"
        arrival = dict(received)
        for worker, _, _, _, position, answered, solo in successes:
            if worker == writer:
                delays[solo].append(max(0.0, arrival[position] - answered))
    assert len(delays[False]) + len(delays[True]) == head and len(delays[True]) == 2 * SOLO
    with capsys.disabled():
        for solo, label in ((True, "other process idle"), (False, "both writing")):
            ordered = sorted(delays[solo])
            p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
            print(
                f"\n[contract:{backend.name}] cross-process wake-up ({label}, {len(ordered)} "
                f"events): p50 {statistics.median(ordered) * 1000:.1f} ms, "
                f"p99 {p99 * 1000:.1f} ms, max {ordered[-1] * 1000:.1f} ms",
                end="",
            )
        print(f" ({len(successes)} successes, {len(conflicts)} conflicts)")
    worst = max(delays[False] + delays[True])
    assert worst < 1.0, f"a subscriber waited {worst:.3f}s for another process's event"

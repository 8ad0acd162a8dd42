"""``view_live_latency``: how long a committed event takes to show in a view, across processes.

Three processes: a writer appends ``size`` flight events ``rate`` times a second and notes the
moment each append returned; the maintainer follows the log (one view, the bench view); an
observer polls the view's committed checkpoint every millisecond (no faster) and notes when it
moved. Latency is, per append, the first observed moment the checkpoint covered its last
position minus the moment the append returned. ``time.monotonic`` is one clock for every
process on the machine. The maintainer also reports its CPU use and the largest page it read
(the backlog it ever had to catch up).

Where the time goes: the maintainer notes when each round ended (its commit done) and the CPU
time the round used, so each latency splits into the maintainer's part (append returned →
view committed) and the reader's (view committed → observed); a round whose wall time far
exceeds its CPU time waited for a core (the machine's load), not for facta's work.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Final

import apsw
import numpy as np

from facta.log import LogConfig, NewEvent, SqliteLog, StreamAppend

POLL_SECONDS: Final = 0.001  # the observer's poll


def _writer(log_path: str, out: str, seconds: float, rate: int, size: int) -> None:
    from facta.views.bench import BENCH_VIEW, flights

    rows = flights()
    fields = list(BENCH_VIEW["fields"])
    sent: list[tuple[int, float]] = []
    with SqliteLog(log_path, LogConfig(durability="normal")) as log:
        start = time.monotonic()
        for tick in range(int(seconds * rate)):
            due = start + tick / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            streams: dict[str, list[NewEvent]] = {}
            for offset in range(size):
                row = rows[(tick * size + offset) % len(rows)]
                name = f"flight-{row['carrier']}{row['flight']}-{row['month']}-{row['day']}"
                data = {k: row[k] for k in fields}
                streams.setdefault(name, []).append(NewEvent(type="FlightDeparted", data=data))
            log.append_many_sync([StreamAppend(s, e) for s, e in streams.items()])
            sent.append((log.head_sync(), time.monotonic()))
    Path(out).write_text(json.dumps(sent))


def _maintainer(log_path: str, out: str, stop_file: str) -> None:
    from facta.views.bench import BENCH_VIEW
    from facta.views.compile import compile_view
    from facta.views.definition import load_definition
    from facta.views.engine import ViewEngine, follow
    from facta.views.store import ViewStore, views_path

    view = compile_view(load_definition("bench", BENCH_VIEW))
    store = ViewStore(views_path(log_path))
    stop = threading.Event()

    def watch_for_stop() -> None:
        while not os.path.exists(stop_file):
            time.sleep(0.05)
        stop.set()

    threading.Thread(target=watch_for_stop, daemon=True).start()
    with ViewEngine(log_path, view, store).open() as engine:
        Path(out + ".ready").write_text("ready")
        cpu, wall = time.process_time(), time.monotonic()
        largest = [0]
        # Per round that folded events: (checkpoint committed, when, the round's thread CPU ms).
        rounds: list[tuple[int, float, float]] = []
        last_cpu = [time.thread_time()]

        def note(folded: int) -> None:
            now_cpu = time.thread_time()
            if folded:
                largest[0] = max(largest[0], folded)
                rounds.append((engine.committed, time.monotonic(), (now_cpu - last_cpu[0]) * 1000))
            last_cpu[0] = now_cpu

        follow([engine], stop, on_run=note)  # what `facta views run` runs
        cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    summary = {"cpu_percent": 100 * cpu / wall, "backlog": largest[0], "rounds": rounds}
    Path(out).write_text(json.dumps(summary))


def _observer(log_path: str, out: str, stop_file: str) -> None:
    from facta.views.store import views_path

    # A reader of its own, as a dashboard would be: it reads the committed checkpoint when the
    # views file has changed (PRAGMA data_version), polling no faster than every millisecond.
    conn: Any = apsw.Connection(views_path(log_path), flags=apsw.SQLITE_OPEN_READONLY)
    conn.set_busy_timeout(5000)
    query = (
        "SELECT g.checkpoint FROM view_current c JOIN view_generations g "
        "ON g.view = c.view AND g.generation = c.generation WHERE c.view = 'bench'"
    )
    seen: list[tuple[int, float]] = []
    last, version = -1, -1
    while not os.path.exists(stop_file):
        now = int(conn.execute("PRAGMA data_version").fetchone()[0])
        if now != version:
            version = now
            row = conn.execute(query).fetchone()
            checkpoint = -1 if row is None else int(row[0])
            if checkpoint != last:
                seen.append((checkpoint, time.monotonic()))
                last = checkpoint
        time.sleep(POLL_SECONDS)
    conn.close()
    Path(out).write_text(json.dumps(seen))


def _spawn(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "facta.views.bench_live", *args])


def _wait_for(path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path.name} did not appear within {timeout} s")
        time.sleep(0.01)


def live_latency(
    directory: Path, seconds: float, rate: int = 100, size: int = 50
) -> dict[str, Any]:
    """Run the three processes for ``seconds`` and summarise the latencies."""
    log_path = str(directory / "live.db")
    with SqliteLog(log_path, LogConfig(durability="normal")):
        pass
    stop_file = str(directory / "live.stop")
    files = {role: str(directory / f"live.{role}.json") for role in ("w", "m", "o")}
    maintainer = _spawn("maintainer", log_path, files["m"], stop_file)
    _wait_for(Path(files["m"] + ".ready"), 60)
    observer = _spawn("observer", log_path, files["o"], stop_file)
    writer = _spawn("writer", log_path, files["w"], str(seconds), str(rate), str(size))
    try:
        writer.wait(timeout=seconds * 3 + 60)
        time.sleep(0.5)  # let the view show the last append
    finally:
        Path(stop_file).write_text("stop")
        for process in (maintainer, observer, writer):
            process.wait(timeout=60)
    sent = json.loads(Path(files["w"]).read_text())
    seen = json.loads(Path(files["o"]).read_text())
    maintained = json.loads(Path(files["m"]).read_text())
    checkpoints = np.asarray([c for c, _ in seen], dtype=np.int64)
    moments = np.asarray([t for _, t in seen], dtype=np.float64)
    rounds = maintained["rounds"]
    folded_to = np.asarray([c for c, _, _ in rounds], dtype=np.int64)
    folded_at = np.asarray([t for _, t, _ in rounds], dtype=np.float64)
    latencies, maintainer_part = [], []
    for position, committed in sent:
        index = int(np.searchsorted(checkpoints, position, side="left"))
        if index < checkpoints.size:
            latencies.append(max(moments[index] - committed, 0.0) * 1000)
            done = int(np.searchsorted(folded_to, position, side="left"))
            if done < folded_to.size:
                maintainer_part.append(max(folded_at[done] - committed, 0.0) * 1000)
    found = np.asarray(latencies, dtype=np.float64)
    folding = np.asarray(maintainer_part or [0.0], dtype=np.float64)
    round_cpu = np.asarray([ms for _, _, ms in rounds] or [0.0], dtype=np.float64)
    return {
        "value": float(np.percentile(found, 99)),
        "p50_ms": float(np.percentile(found, 50)),
        "max_ms": float(found.max()),
        "appends": len(sent),
        "seen": int(found.size),
        "events": len(sent) * size,
        "backlog": maintained["backlog"],
        "cpu_percent": maintained["cpu_percent"],
        # append returned -> the maintainer's round done (its commit and the collector's
        # settling after it); the rest is the reader's part
        "maintainer_p50_ms": float(np.percentile(folding, 50)),
        "maintainer_p99_ms": float(np.percentile(folding, 99)),
        "rounds": len(rounds),
        "round_cpu_p50_ms": float(np.percentile(round_cpu, 50)),
        "round_cpu_p99_ms": float(np.percentile(round_cpu, 99)),
    }


def main(argv: list[str]) -> None:
    role, rest = argv[0], argv[1:]
    if role == "writer":
        _writer(rest[0], rest[1], float(rest[2]), int(rest[3]), int(rest[4]))
    elif role == "maintainer":
        _maintainer(rest[0], rest[1], rest[2])
    elif role == "observer":
        _observer(rest[0], rest[1], rest[2])
    else:
        raise SystemExit(f"unknown role {role!r}: expected writer, maintainer or observer")


if __name__ == "__main__":
    main(sys.argv[1:])

"""``facta bench serve``: what a client of ``facta serve`` waits for, measured end to end.

Two lines, each against a real ``facta serve --project`` subprocess on 127.0.0.1:

``serve_health_during_rebuild``
    the server builds a view over ``copies`` × 336,776 flights (three copies: 1,010,328 events)
    in its maintainer thread while a client asks ``GET /health`` every 20 ms; p50/p99 of those
    answers. Goal: p99 < 100 ms.
``serve_live_latency``
    a writer in this process appends ``rate`` events a second in commits of ``per_commit``
    events straight to the log file; one client follows ``GET /log/live`` and another a live
    view query. Latency = SSE message received − append committed (``append_many_sync``
    returned), for every committed event (the view's update covers every commit up to its id).
    Goal: p99 ≤ 100 ms at 5,000 events/s.

Every line records the load average: the machine is shared, figures are indicative.
"""

from __future__ import annotations

import json
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import typer

from facta.log import LogConfig, NewEvent, SqliteLog, StreamAppend
from facta.server.process import environment, serve_process
from facta.server.tokens import create_token

LineSink = Callable[[dict[str, Any]], None]


def _project(path: Path) -> Path:
    from facta.views.bench import BENCH_VIEW

    lines = ["[views.flights]", 'description = "bench: flights per carrier and origin"']
    lines.append(f"source = {{ types = {json.dumps(BENCH_VIEW['source']['types'])} }}")
    lines.append(f"dimensions = {json.dumps(BENCH_VIEW['dimensions'])}")
    bucket = BENCH_VIEW["bucket"]
    lines.append(
        f'bucket = {{ field = "{bucket["field"]}", width = "{bucket["width"]}", '
        f'timezone = "{bucket["timezone"]}" }}'
    )
    lines.append("[views.flights.fields]")
    lines += [f'{name} = "{kind}"' for name, kind in BENCH_VIEW["fields"].items()]
    lines.append("[views.flights.measures]")
    lines += [f"{name} = {json.dumps(spec)}" for name, spec in BENCH_VIEW["measures"].items()]
    project = path / "facta.toml"
    project.write_text("\n".join(lines) + "\n")
    return project


@contextmanager
def _serving(workdir: Path, log: Path, project: Path, token_line: str) -> Iterator[str]:
    args = ["--log", str(log), "--project", str(project), "--port", "0"]
    env = environment([token_line], workdir / "none")
    out, err = workdir / "serve.out", workdir / "serve.err"
    with serve_process(args, stdout=out, stderr=err, env=env) as (_, url):
        yield url


def health_during_rebuild(emit: LineSink, *, copies: int = 3) -> None:
    from facta.bench.method import environment, load_average, percentile
    from facta.views.bench import build_log

    with tempfile.TemporaryDirectory(prefix="facta-bench-serve-") as name:
        workdir = Path(name)
        log = workdir / "facta.db"
        events = build_log(log, copies)
        project = _project(workdir)
        token = create_token("bench", ["read"])
        headers = {"Authorization": f"Bearer {token.token}"}
        with (
            _serving(workdir, log, project, token.line) as url,
            httpx.Client(base_url=url, timeout=30) as client,
        ):
            started = time.monotonic()
            samples: list[float] = []
            position = 0
            last_look = 0.0
            while position < events:
                before = time.perf_counter()
                answer = client.get("/health")
                samples.append((time.perf_counter() - before) * 1000)
                assert answer.status_code == 200, answer.text
                if time.monotonic() - last_look > 1.0:
                    last_look = time.monotonic()
                    views = client.get("/views", headers=headers).json()
                    position = views[0]["position"] if views else 0
                time.sleep(0.02)
            seconds = time.monotonic() - started
    p99 = percentile(samples, 0.99)
    emit(
        {
            "name": "serve_health_during_rebuild",
            "value": round(p99, 1),
            "unit": "ms (p99 of GET /health)",
            "p50_ms": round(percentile(samples, 0.5), 1),
            "max_ms": round(max(samples), 1),
            "requests": len(samples),
            "events": events,
            "rebuild_seconds": round(seconds, 1),
            "goal": 100.0,
            "meets_goal": p99 < 100.0,
            **environment(),
            "loadavg": load_average(),
        }
    )


class _Listener:
    """Reads an SSE stream in a thread: (received at, id) of every message with an id."""

    def __init__(self, url: str, path: str, token: str) -> None:
        self.received: list[tuple[float, int, str]] = []
        self.ready = threading.Event()
        self.error: str | None = None
        self._stop = False
        self._thread = threading.Thread(target=self._run, args=(url, path, token), daemon=True)
        self._thread.start()

    def _run(self, url: str, path: str, token: str) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        with (
            httpx.Client(base_url=url, timeout=httpx.Timeout(30, read=60)) as client,
            client.stream("GET", path, headers=headers) as response,
        ):
            if response.status_code != 200:
                self.error = f"GET {path}: HTTP {response.status_code} {response.read()[:300]!r}"
                return
            event, ident = "message", None
            for line in response.iter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("id:"):
                    ident = line[3:].strip()
                elif line == "":
                    if ident is not None:
                        self.received.append((time.monotonic(), int(ident), event))
                    self.ready.set()
                    event, ident = "message", None
                if self._stop:
                    return

    def wait_ready(self, timeout: float) -> None:
        """Until the first message arrived; raises if the stream failed or stayed silent."""
        deadline = time.monotonic() + timeout
        while not self.ready.wait(0.05):
            if self.error is not None or not self._thread.is_alive():
                raise RuntimeError(f"a live feed did not start: {self.error or 'it ended'}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"a live feed sent nothing within {timeout:g} s")

    def stop(self) -> None:
        self._stop = True
        self._thread.join(5)


def live_latency(
    emit: LineSink, *, rate: int = 5000, per_commit: int = 50, seconds: float = 10.0
) -> None:
    from facta.bench.method import environment, load_average, percentile
    from facta.views.bench import flights

    rows = flights()
    with tempfile.TemporaryDirectory(prefix="facta-bench-serve-") as name:
        workdir = Path(name)
        log_path = workdir / "facta.db"
        config = LogConfig(durability="normal", max_append_events=10_000)
        with SqliteLog(log_path, config) as log:
            log.append_sync("warm-up", [NewEvent(type="Started")])
        project = _project(workdir)
        token = create_token("bench", ["read"])
        with _serving(workdir, log_path, project, token.line) as url:
            # The server builds the declared view as it starts: min_position waits (up to the
            # timeout) until the view covers the warm-up event instead of answering 404.
            view_path = "/live/views/flights/groups?group_by=carrier&min_position=1&timeout=30"
            feeds = {
                "log": _Listener(url, "/log/live?type=FlightDeparted", token.token),
                "view": _Listener(url, view_path, token.token),
            }
            for feed in feeds.values():
                feed.wait_ready(60)
            committed: list[tuple[int, int, float]] = []  # first, last position, when
            with SqliteLog(log_path, config) as log:
                interval = per_commit / rate
                start = time.monotonic()
                n = 0
                while time.monotonic() - start < seconds:
                    due = start + len(committed) * interval
                    pause = due - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)
                    batch = []
                    for _ in range(per_commit):
                        row = rows[n % len(rows)]
                        n += 1
                        data = {k: row[k] for k in ("carrier", "origin", "dep_delay", "time_hour")}
                        batch.append(NewEvent(type="FlightDeparted", data=data))
                    result = log.append_many_sync([StreamAppend(f"flight-{n}", tuple(batch))])
                    assert result.first_position is not None and result.last_position is not None
                    committed.append(
                        (result.first_position, result.last_position, time.monotonic())
                    )
                achieved = len(committed) * per_commit / (time.monotonic() - start)
            time.sleep(2.0)
            for feed in feeds.values():
                feed.stop()
        server_log = (workdir / "serve.err").read_text(errors="replace")
    for name, feed in feeds.items():
        latencies = _latencies(committed, feed.received)
        kinds: dict[str, int] = {}
        for _, _, event in feed.received:
            kinds[event] = kinds.get(event, 0) + 1
        # If nothing arrived, say what did and what the server logged, to find out why.
        diagnosis = {} if latencies else {"server_log_tail": server_log[-2000:]}
        emit(
            {
                "name": f"serve_live_latency_{name}",
                # nothing delivered: no figure (null, never NaN, in JSON)
                "value": round(percentile(latencies, 0.99), 1) if latencies else None,
                "unit": "ms (p99, append committed to SSE received)",
                "p50_ms": round(percentile(latencies, 0.5), 1) if latencies else None,
                "delivered": len(latencies),
                "messages": kinds,
                **diagnosis,
                "events": len(committed) * per_commit,
                "rate_events_per_s": round(achieved),
                "per_commit": per_commit,
                "goal": 100.0,
                "meets_goal": bool(latencies) and percentile(latencies, 0.99) <= 100.0,
                **environment(),
                "loadavg": load_average(),
            }
        )


def _latencies(
    committed: list[tuple[int, int, float]],
    received: list[tuple[float, int, str]],
) -> list[float]:
    """Milliseconds from each commit to the first message whose id covers it."""
    out: list[float] = []
    messages = sorted(
        (ident, at) for at, ident, event in received if event in ("log", "update", "snapshot")
    )
    index = 0
    for first, last, at in committed:
        del first  # a commit is delivered when the message of its last event arrives
        target = last
        while index < len(messages) and messages[index][0] < target:
            index += 1
        if index == len(messages):
            break
        out.append(max(0.0, (messages[index][1] - at) * 1000))
    return out


def serve_command(
    copies: int = typer.Option(3, help="Copies of the 336,776 flights for the rebuild line."),
    rate: int = typer.Option(5000, help="Events a second for the latency lines."),
    seconds: float = typer.Option(10.0, help="How long the writer writes."),
    only: str | None = typer.Option(None, help="'latency' or 'rebuild'"),
) -> None:
    """Benchmark facta serve: live latency at a write rate, /health during a view build."""

    def emit(line: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()

    if only in (None, "latency"):
        live_latency(emit, rate=rate, seconds=seconds)
    if only in (None, "rebuild"):
        health_during_rebuild(emit, copies=copies)

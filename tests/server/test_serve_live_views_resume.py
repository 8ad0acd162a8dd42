"""A live view query under load: random disconnects and a server restart, state stays exact.

A writer appends flights in multi-event commits (about 2,500 events/s) while a client follows
a live query, drops the connection after a random number of messages (12 times, once across
a restart of the server) and reconnects with ``Last-Event-ID``. Every reconnect gets one
coalesced update (or, after the restart, whose history the new process does not have, a
``reset`` and a snapshot). When the writer stops, the client's rows at its last id equal the
request/response answer at that position.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from facta.log import LogConfig, NewEvent, SqliteLog, StreamAppend
from tests.server.conftest import Tokens
from tests.server.live_client import LiveState, differences, follow, sketch_columns
from tests.server.server_process import RunningServer, facta_serve
from tests.server.sse_reader import sse_messages
from tests.server.view_project import fill_log, write_project

COMMIT_EVENTS = 50
MIN_WRITTEN = 5_000
PATH = "/live/views/delays/groups?group_by=carrier"
CARRIERS = ["AA", "B6", "DL", "UA", "WN", "ZZ"]


def _write(path: Path, stop: threading.Event, written: list[int], seed: int) -> None:
    rng = random.Random(seed)
    with SqliteLog(path, LogConfig(durability="normal")) as log:
        while not stop.is_set() or written[0] < MIN_WRITTEN:
            events = [
                NewEvent(
                    type="FlightDeparted",
                    data={
                        "carrier": rng.choice(CARRIERS),
                        "origin": rng.choice(["JFK", "LGA", "EWR"]),
                        "dep_delay": rng.uniform(-10, 120),
                        "arr_delay": rng.uniform(-10, 120),
                        "distance": rng.randint(100, 3000),
                        "time_hour": f"2013-08-{rng.randint(1, 28):02d}T10:00:00-04:00",
                    },
                )
                for _ in range(COMMIT_EVENTS)
            ]
            half = COMMIT_EVENTS // 2
            log.append_many_sync(
                [
                    StreamAppend(f"flight-{rng.randint(0, 99)}", events[:half]),
                    StreamAppend(f"flight-{rng.randint(100, 199)}", events[half:]),
                ]
            )
            written[0] += COMMIT_EVENTS
            time.sleep(0.02)


def _read_some(server: RunningServer, token: str, state: LiveState, count: int) -> list[str]:
    """Apply ``count`` messages with an id (at least) to ``state``; return the event names."""
    headers = {"Authorization": f"Bearer {token}"}
    if state.last_id is not None:
        headers["Last-Event-ID"] = str(state.last_id)
    seen: list[str] = []
    with_id = 0
    deadline = time.monotonic() + 30
    with (
        httpx.Client(base_url=server.url, headers=headers, timeout=10) as client,
        client.stream("GET", PATH) as response,
    ):
        assert response.status_code == 200, response.read()
        for message in sse_messages(response):
            assert time.monotonic() < deadline, f"only {with_id} of {count} messages in 30 s"
            state.apply(message)
            seen.append(message.event)
            if message.id is not None:
                with_id += 1
            if with_id >= count:
                break
    return seen


def _answer(server: RunningServer, token: str, position: int) -> dict[str, Any]:
    with server.client(token) as reader:
        answer = reader.get(
            "/views/delays/groups",
            params={"group_by": "carrier", "min_position": position, "timeout": 20},
        )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_random_disconnects_and_a_restart_keep_the_live_state_exact(
    tmp_path: Path, tokens: Tokens
) -> None:
    rng = random.Random(20261126)
    workdir = tmp_path / "serve"
    workdir.mkdir()
    project = write_project(workdir)
    fill_log(workdir / "facta.db", 300)
    args = ["--project", str(project)]
    stop = threading.Event()
    written = [0]
    writer = threading.Thread(target=_write, args=(workdir / "facta.db", stop, written, 11))
    state = LiveState()
    firsts: list[tuple[int, str]] = []
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(facta_serve(workdir, tokens.lines, args))
        _answer(server, tokens.reader, 300)
        writer.start()
        try:
            for round_number in range(12):
                seen = _read_some(server, tokens.reader, state, rng.randint(1, 6))
                firsts.append((round_number, seen[0]))
                if round_number == 5:
                    port = server.port
                    stack.close()
                    server = stack.enter_context(
                        facta_serve(workdir, tokens.lines, args, port=port)
                    )
        finally:
            stop.set()
            writer.join(60)
        with SqliteLog(workdir / "facta.db") as log:
            head = log.head_sync()
        reference = _answer(server, tokens.reader, head)
        assert reference["position"] == head
        while state.last_id is None or state.last_id < head:
            _read_some(server, tokens.reader, state, 1)
        fresh = LiveState()
        follow(server, tokens.reader, PATH, fresh, until=lambda s: s.last_id is not None)
        sketches = sketch_columns(server, tokens.reader, "delays")
    assert written[0] >= MIN_WRITTEN
    assert firsts[0] == (0, "snapshot")
    # Reconnects resume with one coalesced update; after the restart the new server has no
    # history of this query, so it says reset and sends a snapshot.
    assert firsts[6] == (6, "reset")
    assert all(first == "update" for n, first in firsts if n not in (0, 6)), firsts
    assert state.last_id == head
    expected = {tuple(row[k] for k in reference["key"]): row for row in reference["rows"]}
    # Exact measures equal the request/response answer at the same position; every column,
    # sketches included, equals the snapshot a new client of the same query gets at that id.
    assert differences(state.rows, expected, sketches) == {}
    assert differences(state.rows, fresh.rows) == {}
    assert fresh.last_id == state.last_id
    assert sum(row["flights"] for row in state.rows.values()) == 300 + written[0]

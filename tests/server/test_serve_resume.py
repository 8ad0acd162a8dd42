"""The live log under load: random disconnects and a server restart lose and repeat nothing."""

from __future__ import annotations

import contextlib
import random
import threading
import time
from pathlib import Path

import httpx

from facta.log import LogConfig, NewEvent, SqliteLog, StreamAppend
from tests.server.conftest import Tokens
from tests.server.server_process import RunningServer, facta_serve
from tests.server.sse_reader import sse_messages

COMMIT_EVENTS = 20
MIN_WRITTEN = 2_000


def _write(path: Path, stop: threading.Event, written: list[int], seed: int) -> None:
    """Another process's view of the log: multi-stream commits of 20 events, mixed types."""
    rng = random.Random(seed)
    with SqliteLog(path, LogConfig(durability="normal")) as log:
        while not stop.is_set() or written[0] < MIN_WRITTEN:
            entries = [
                StreamAppend(
                    f"sensor-{number}",
                    [
                        NewEvent(type=rng.choice(["Keep", "Skip"]), data={"v": rng.random()})
                        for _ in range(COMMIT_EVENTS // 4)
                    ],
                )
                for number in rng.sample(range(8), 4)
            ]
            log.append_many_sync(entries)
            written[0] += COMMIT_EVENTS
            time.sleep(0.005)


def _read_some(server: RunningServer, token: str, last_id: str | None, count: int) -> list[int]:
    headers = {"Authorization": f"Bearer {token}"}
    if last_id is not None:
        headers["Last-Event-ID"] = last_id
    positions: list[int] = []
    deadline = time.monotonic() + 30
    with (
        httpx.Client(base_url=server.url, headers=headers, timeout=10) as client,
        client.stream("GET", "/log/live", params={"type": "Keep"}) as response,
    ):
        assert response.status_code == 200, response.read()
        for message in sse_messages(response):
            assert time.monotonic() < deadline, f"only {len(positions)} of {count} in 30 s"
            if message.event == "log":
                assert message.json["type"] == "Keep"
                positions.append(message.position)
            if len(positions) >= count:
                break
    return positions


def test_random_disconnects_and_a_restart_lose_and_repeat_nothing(
    tmp_path: Path, tokens: Tokens
) -> None:
    rng = random.Random(20261126)
    workdir = tmp_path / "serve"
    workdir.mkdir()
    stop = threading.Event()
    written = [0]
    writer = threading.Thread(target=_write, args=(workdir / "facta.db", stop, written, 7))
    received: list[int] = []
    drops = 0
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(facta_serve(workdir, tokens.lines))
        writer.start()
        try:
            for round_number in range(12):
                last_id = str(received[-1]) if received else None
                received += _read_some(server, tokens.reader, last_id, rng.randint(1, 150))
                drops += 1
                if round_number == 5:
                    port = server.port
                    stack.close()
                    server = stack.enter_context(facta_serve(workdir, tokens.lines, port=port))
        finally:
            stop.set()
            writer.join(60)
        with SqliteLog(workdir / "facta.db") as log:
            expected = [e.position for e in log.read_all_sync(after=0, limit=10**6, types=["Keep"])]
        # The writer has stopped: the rest of the stream must end exactly where the log does.
        if received[-1] < expected[-1]:
            received += _drain(server, tokens.reader, str(received[-1]), expected[-1])
    assert drops >= 10
    assert written[0] >= MIN_WRITTEN
    assert len(received) == len(set(received))
    assert received == expected


def _drain(server: RunningServer, token: str, last_id: str, until: int) -> list[int]:
    headers = {"Authorization": f"Bearer {token}", "Last-Event-ID": last_id}
    positions: list[int] = []
    deadline = time.monotonic() + 30
    with (
        httpx.Client(base_url=server.url, headers=headers, timeout=10) as client,
        client.stream("GET", "/log/live", params={"type": "Keep"}) as response,
    ):
        for message in sse_messages(response):
            assert time.monotonic() < deadline, f"stream stopped at {positions[-1:]} < {until}"
            if message.event == "log":
                positions.append(message.position)
            if positions and positions[-1] >= until:
                break
    return positions

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
from pathlib import Path
from typing import IO, Any

import pytest

from tests.cli.console import FACTA, run_facta

TIMEOUT = 20.0


class Tail:
    """``facta tail`` in a subprocess, its stdout read line by line on a thread."""

    def __init__(self, log_path: Path, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if k != "FACTA_LOG"}
        self.process = subprocess.Popen(
            [str(FACTA), "tail", "--log", str(log_path), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        assert self.process.stdout is not None
        threading.Thread(target=self._pump, args=(self.process.stdout,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line)

    def next_event(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"tail printed nothing within {timeout}s") from None
        event: dict[str, Any] = json.loads(line)
        return event

    def stop(self, signum: int) -> tuple[int, str]:
        self.process.send_signal(signum)
        try:
            code = self.process.wait(timeout=TIMEOUT)
        finally:
            if self.process.poll() is None:
                self.process.kill()
        assert self.process.stderr is not None
        return code, self.process.stderr.read()


def append(log_path: Path, stream: str, data: str) -> None:
    result = run_facta("append", stream, "Happened", data, "--log", str(log_path))
    assert result.code == 0, result.stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_tail_catches_up_then_receives_an_event_appended_by_another_process(
    log_path: Path, signum: int
) -> None:
    append(log_path, "before", '{"n": 0}')
    tail = Tail(log_path, "--after", "0")
    try:
        caught_up = tail.next_event()
        assert (caught_up["position"], caught_up["stream"]) == (1, "before")
        append(log_path, "live", '{"n": 1}')
        live = tail.next_event()
        assert (live["position"], live["stream"], live["data"]) == (2, "live", {"n": 1})
    finally:
        code, stderr = tail.stop(signum)
    assert code == 0, stderr
    assert stderr == ""


def test_tail_without_after_prints_only_new_events(log_path: Path) -> None:
    append(log_path, "old", "{}")
    tail = Tail(log_path)
    try:
        # tail starts at the end of the log; keep appending until it has surely started
        for attempt in range(20):
            append(log_path, f"new-{attempt}", "{}")
            try:
                first = tail.next_event(timeout=1.0)
                break
            except AssertionError:
                continue
        else:
            raise AssertionError("tail printed none of 20 new events")
        assert first["stream"].startswith("new-"), first
        assert first["position"] >= 2
    finally:
        code, stderr = tail.stop(signal.SIGTERM)
    assert (code, stderr) == (0, "")


def test_tail_filters_by_type(log_path: Path) -> None:
    run_facta("append", "a", "Wanted", "--log", str(log_path))
    run_facta("append", "b", "Other", "--log", str(log_path))
    run_facta("append", "c", "Wanted", "--log", str(log_path))
    tail = Tail(log_path, "--after", "0", "--type", "Wanted")
    try:
        assert [tail.next_event()["stream"] for _ in range(2)] == ["a", "c"]
    finally:
        code, _ = tail.stop(signal.SIGTERM)
    assert code == 0

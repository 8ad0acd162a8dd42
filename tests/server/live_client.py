"""A live view query client: applies snapshot and update messages to its rows, like a page."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import httpx

from tests.server.server_process import RunningServer
from tests.server.sse_reader import SseMessage, sse_messages


class LiveState:
    """Rows by key, built from ``snapshot`` and ``update`` messages (parts concatenated)."""

    def __init__(self) -> None:
        self.key: list[str] = []
        self.rows: dict[tuple[Any, ...], dict[str, Any]] = {}
        self.last_id: int | None = None
        self.events: list[SseMessage] = []
        self._parts: list[dict[str, Any]] = []

    def apply(self, message: SseMessage) -> None:
        self.events.append(message)
        if message.event not in ("snapshot", "update"):
            if message.id is not None:
                self.last_id = message.position
            return
        body = message.json
        self._parts.append(body)
        if message.id is None:
            return  # more parts follow; the id comes on the last one
        parts, self._parts = self._parts, []
        if message.event == "snapshot":
            self.key = body["key"]
            self.rows = {}
            for part in parts:
                for row in part["rows"]:
                    self.rows[self.row_key(row)] = row
        else:
            for part in parts:
                for row in part["upsert"]:
                    self.rows[self.row_key(row)] = row
                for values in part["delete"]:
                    self.rows.pop(tuple(values), None)
        self.last_id = message.position

    def row_key(self, row: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(row[name] for name in self.key)

    def sorted_rows(self) -> list[dict[str, Any]]:
        return sorted(self.rows.values(), key=lambda r: json.dumps([r[k] for k in self.key]))


def follow(
    server: RunningServer,
    token: str,
    path: str,
    state: LiveState,
    *,
    until: Callable[[LiveState], bool],
    last_event_id: int | None = None,
    timeout: float = 20.0,
) -> int:
    """Read messages into ``state`` until ``until(state)``; return how many were read."""
    headers = {"Authorization": f"Bearer {token}"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    count = 0
    timer = httpx.Timeout(timeout, read=timeout)
    with (
        httpx.Client(base_url=server.url, timeout=timer) as client,
        client.stream("GET", path, headers=headers) as response,
    ):
        assert response.status_code == 200, response.read().decode()
        for message in sse_messages(response):
            state.apply(message)
            count += 1
            if until(state):
                break
    return count


class Background:
    """``follow`` in a thread, for tests that write while a client listens."""

    def __init__(self, target: Callable[[], Any]) -> None:
        self.error: BaseException | None = None
        self.result: Any = None

        def run() -> None:
            try:
                self.result = target()
            except BaseException as exc:  # reported by join()
                self.error = exc

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def join(self, timeout: float = 30.0) -> Any:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the live client did not finish"
        if self.error is not None:
            raise self.error
        return self.result


def sketch_columns(server: RunningServer, token: str, view: str) -> set[str]:
    """Output columns of randomised sketches (KLL quantiles, frequent items, HLL): two merges of
    the same states may differ within the sketch's error, so they are compared separately."""
    with httpx.Client(base_url=server.url, timeout=10) as client:
        views = client.get("/views", headers={"Authorization": f"Bearer {token}"}).json()
    [found] = [v for v in views if v["name"] == view]
    return {
        column
        for measure in found["measures"]
        if measure["kind"] in ("quantiles", "top_k", "distinct")
        for column in measure["columns"]
        if not column.endswith("_n")
    }


def differences(
    mine: dict[tuple[Any, ...], dict[str, Any]],
    theirs: dict[tuple[Any, ...], dict[str, Any]],
    skip: set[str] = frozenset(),  # type: ignore[assignment]
) -> dict[tuple[tuple[Any, ...], str], tuple[Any, Any]]:
    """Cells that differ (floats within 1e-9 relative are equal); keys must match exactly."""
    out: dict[tuple[tuple[Any, ...], str], tuple[Any, Any]] = {}
    for key in set(mine) | set(theirs):
        left, right = mine.get(key), theirs.get(key)
        if left is None or right is None:
            out[(key, "<row>")] = (left is not None, right is not None)
            continue
        for name in set(left) | set(right):
            if name in skip:
                continue
            a, b = left.get(name), right.get(name)
            if isinstance(a, float) and isinstance(b, float):
                if abs(a - b) <= 1e-9 * max(abs(a), abs(b), 1.0):
                    continue
            elif a == b:
                continue
            out[(key, name)] = (a, b)
    return out

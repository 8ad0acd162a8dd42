"""The live log over Server-Sent Events against a real server: resume, filters, heartbeat,
connection caps."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.server.conftest import HEARTBEAT, MAX_STREAMS, Tokens
from tests.server.server_process import RunningServer
from tests.server.sse_reader import SseMessage, sse_messages


def _append(server: RunningServer, tokens: Tokens, stream: str, count: int, kind: str) -> int:
    with server.client(tokens.writer) as writer:
        answer = writer.post(
            f"/log/streams/{stream}",
            json={"events": [{"type": kind, "data": {"n": n}} for n in range(count)]},
        )
    assert answer.status_code == 200, answer.text
    last: int = answer.json()["last_position"]
    return last


def _head(server: RunningServer, tokens: Tokens) -> int:
    with server.client(tokens.reader) as reader:
        head: int = reader.get("/log/stats").json()["log"]["events"]
    return head


def _log_messages(messages: Iterator[SseMessage], count: int) -> list[SseMessage]:
    taken = []
    for message in messages:
        if message.event == "log":
            taken.append(message)
            if len(taken) == count:
                break
    return taken


def test_resume_with_last_event_id_loses_and_repeats_nothing(
    server: RunningServer, tokens: Tokens
) -> None:
    kind = f"Resume{uuid.uuid4().hex[:8]}"
    start = _head(server, tokens)
    _append(server, tokens, f"resume-{kind}", 30, kind)
    params: dict[str, str | int] = {"after": start, "type": kind}
    received: list[int] = []
    with server.client(tokens.reader) as reader:
        with reader.stream("GET", "/log/live", params=params) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            first = _log_messages(sse_messages(response), 12)
        received += [m.position for m in first]
        assert [m.json["data"]["n"] for m in first] == list(range(12))
        last_id = first[-1].id
        assert last_id is not None
        _append(server, tokens, f"resume-{kind}", 20, kind)
        with reader.stream(
            "GET", "/log/live", params=params, headers={"Last-Event-ID": last_id}
        ) as response:
            rest = _log_messages(sse_messages(response), 38)
        received += [m.position for m in rest]
    with server.client(tokens.reader) as reader:
        expected = [
            e["position"]
            for e in reader.get("/log/events", params={"after": start, "type": kind}).json()[
                "events"
            ]
        ]
    assert len(expected) == 50
    assert received == expected


def test_events_appended_while_connected_arrive_live_and_filtered(
    server: RunningServer, tokens: Tokens
) -> None:
    prefix = f"live-{uuid.uuid4().hex[:8]}"
    start = _head(server, tokens)
    with (
        server.client(tokens.reader) as reader,
        reader.stream("GET", "/log/live", params={"after": start, "prefix": prefix}) as response,
    ):
        messages = sse_messages(response)
        _append(server, tokens, f"{prefix}-a", 3, "Tick")
        _append(server, tokens, f"other-{prefix}", 2, "Tick")
        last = _append(server, tokens, f"{prefix}-b", 2, "Tock")
        got = _log_messages(messages, 5)
    assert [m.json["stream"] for m in got] == [f"{prefix}-a"] * 3 + [f"{prefix}-b"] * 2
    assert got[-1].position == last
    assert [m.position for m in got] == sorted({m.position for m in got})


def test_an_idle_stream_gets_progress_heartbeats(server: RunningServer, tokens: Tokens) -> None:
    kind = f"Idle{uuid.uuid4().hex[:8]}"
    before = _append(server, tokens, f"idle-{kind}", 1, "Other")
    with (
        server.client(tokens.reader) as reader,
        reader.stream("GET", "/log/live", params={"type": kind, "after": before}) as response,
    ):
        started = time.monotonic()
        messages = sse_messages(response)
        beats = [next(messages) for _ in range(3)]
        waited = time.monotonic() - started
    assert [m.event for m in beats] == ["progress"] * 3
    assert all(m.position >= before and m.json["position"] == m.position for m in beats)
    # three idle intervals passed, each at least one heartbeat long (a floor, not a speed check)
    assert waited >= 3 * HEARTBEAT * 0.9


def test_a_bad_last_event_id_is_400(server: RunningServer, tokens: Tokens) -> None:
    with server.client(tokens.reader) as reader:
        bad = reader.get("/log/live", headers={"Last-Event-ID": "abc"})
    assert bad.status_code == 400
    assert bad.json()["error"] == "invalid_last_event_id"


def test_live_streams_per_token_are_capped(server: RunningServer, tokens: Tokens) -> None:
    with httpx.Client(
        base_url=server.url,
        headers={"Authorization": f"Bearer {tokens.capped}"},
        timeout=10,
        limits=httpx.Limits(max_connections=MAX_STREAMS + 2),
    ) as client:
        streams = [client.stream("GET", "/log/live") for _ in range(MAX_STREAMS)]
        opened = [s.__enter__() for s in streams]
        try:
            assert all(r.status_code == 200 for r in opened)
            refused = client.get("/log/live")
            assert refused.status_code == 503
            assert refused.headers["retry-after"] == "1"
            assert refused.json()["error"] == "too_many_connections"
            with (
                server.client(tokens.reader) as other,
                other.stream("GET", "/log/live") as response,
            ):
                assert response.status_code == 200  # the cap is per token
        finally:
            for stream in streams:
                stream.__exit__(None, None, None)
        assert _reopens_within(client, seconds=10)


def _reopens_within(client: httpx.Client, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with client.stream("GET", "/log/live") as response:
            if response.status_code == 200:
                return True
        time.sleep(0.05)
    pytest.fail(f"the cap still refused a stream {seconds} s after the others closed")

"""Live view queries over SSE: snapshot, positioned diffs, resume, sharing, resets and caps.

The client applies messages the way the dashboard does (:class:`LiveState`); its rows at its
last id must equal the request/response answer of the same query at that position.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from facta.log import LogConfig, NewEvent, SqliteLog
from tests.server.conftest import Tokens
from tests.server.live_client import Background, LiveState, differences, follow, sketch_columns
from tests.server.server_process import RunningServer, facta_serve
from tests.server.view_project import facta_apply, fill_log, project_text, write_project

FLIGHTS = 500
LIVE_CAP = 2


@pytest.fixture(scope="module")
def live_server(
    tmp_path_factory: pytest.TempPathFactory, tokens: Tokens
) -> Iterator[RunningServer]:
    workdir = tmp_path_factory.mktemp("serve-live-views")
    project = write_project(workdir)
    fill_log(workdir / "facta.db", FLIGHTS)
    args = [
        "--project",
        str(project),
        "--sse-heartbeat",
        "0.3",
        "--max-live-queries-per-token",
        str(LIVE_CAP),
    ]
    with facta_serve(workdir, tokens.lines, args) as running:
        with running.client(tokens.reader) as reader:
            answer = reader.get(
                "/views/delays/kpi", params={"min_position": FLIGHTS, "timeout": 20}
            )
            assert answer.status_code == 200, answer.text
        yield running


def append_flights(
    server: RunningServer, token: str, carrier: str, count: int, *, delay: float = 1.0
) -> int:
    events = [
        {
            "type": "FlightDeparted",
            "data": {
                "carrier": carrier,
                "origin": "LGA",
                "dep_delay": delay * (n + 1),
                "arr_delay": delay,
                "distance": 100,
                "time_hour": f"2013-07-{1 + n % 28:02d}T08:00:00-04:00",
            },
        }
        for n in range(count)
    ]
    with server.client(token) as writer:
        answer = writer.post(f"/log/streams/live-{carrier}", json={"events": events})
    assert answer.status_code == 200, answer.text
    position: int = answer.json()["last_position"]
    return position


def answer_at(
    server: RunningServer, token: str, shape: str, params: dict[str, Any], position: int
) -> dict[str, Any]:
    """The request/response answer of the query once the view has applied ``position``."""
    with server.client(token) as reader:
        answer = reader.get(
            f"/views/delays/{shape}", params={**params, "min_position": position, "timeout": 10}
        )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def assert_same_rows(
    state: LiveState, body: dict[str, Any], server: RunningServer, token: str
) -> None:
    """Equal to the request/response answer (randomised sketch columns: see differences)."""
    assert state.key == body["key"]
    expected = {tuple(row[k] for k in body["key"]): row for row in body["rows"]}
    assert differences(state.rows, expected, sketch_columns(server, token, "delays")) == {}


def stats(server: RunningServer, token: str) -> dict[str, Any]:
    with server.client(token) as reader:
        live: dict[str, Any] = reader.get("/log/stats").json()["server"]["live_views"]
    return live


def test_snapshot_then_updates_equal_the_query_at_the_last_id(
    live_server: RunningServer, tokens: Tokens
) -> None:
    params = {"group_by": "carrier"}
    path = "/live/views/delays/groups?group_by=carrier"
    target: dict[str, int] = {}
    state = LiveState()

    def done(s: LiveState) -> bool:
        return "position" in target and s.last_id is not None and s.last_id >= target["position"]

    listening = Background(lambda: follow(live_server, tokens.reader, path, state, until=done))
    deadline = time.monotonic() + 10
    while not state.events and time.monotonic() < deadline:
        time.sleep(0.02)
    assert state.events and state.events[0].event == "snapshot"
    last = 0
    for round_ in range(5):
        last = append_flights(live_server, tokens.writer, "L1", 3 + round_)
        time.sleep(0.05)
    target["position"] = last
    listening.join()
    updates = [m for m in state.events if m.event == "update"]
    assert updates, "the appends reached the client as updates"
    ids = [m.position for m in state.events if m.id is not None]
    assert ids == sorted(ids), "ids (positions) only grow"
    body = updates[-1].json
    assert set(body) >= {"position", "view_hash", "upsert", "delete"}
    assert state.rows[("L1",)]["flights"] == sum(3 + r for r in range(5))
    assert state.last_id is not None
    reference = answer_at(live_server, tokens.reader, "groups", params, state.last_id)
    assert reference["position"] == state.last_id
    assert_same_rows(state, reference, live_server, tokens.reader)


def test_last_event_id_gets_one_coalesced_update(
    live_server: RunningServer, tokens: Tokens
) -> None:
    path = "/live/views/delays/groups?group_by=carrier"
    first = LiveState()
    follow(live_server, tokens.reader, path, first, until=lambda s: s.last_id is not None)
    assert first.events[0].event == "snapshot" and first.last_id is not None
    resumed_from = first.last_id
    for _ in range(3):
        last = append_flights(live_server, tokens.writer, "R1", 2)
    answer_at(live_server, tokens.reader, "kpi", {}, last)
    again = LiveState()
    again.key, again.rows = first.key, dict(first.rows)
    follow(
        live_server,
        tokens.reader,
        path,
        again,
        until=lambda s: len(s.events) >= 1,
        last_event_id=resumed_from,
    )
    [message] = again.events
    assert message.event == "update", message
    assert message.position >= last
    upserted = {row["carrier"] for row in message.json["upsert"]}
    assert upserted == {"R1"}, "only what changed after the id, once"
    reference = answer_at(live_server, tokens.reader, "groups", {"group_by": "carrier"}, last)
    assert reference["position"] == again.last_id
    assert_same_rows(again, reference, live_server, tokens.reader)


def test_identical_live_queries_share_one_computation(
    live_server: RunningServer, tokens: Tokens
) -> None:
    path = "/live/views/delays/kpi?where=carrier:S1"
    before = stats(live_server, tokens.reader)
    states = [LiveState() for _ in range(2)]

    def listener(state: LiveState, token: str) -> Background:
        def updated(st: LiveState) -> bool:
            return any(m.event == "update" for m in st.events)

        return Background(lambda: follow(live_server, token, path, state, until=updated))

    started = [
        listener(s, token) for s, token in zip(states, (tokens.reader, tokens.admin), strict=True)
    ]
    deadline = time.monotonic() + 10
    while any(not s.events for s in states) and time.monotonic() < deadline:
        time.sleep(0.02)
    during = stats(live_server, tokens.reader)
    assert during["computations_started"] == before["computations_started"] + 1
    append_flights(live_server, tokens.writer, "S1", 4)
    for background in started:
        background.join()
    for state in states:
        assert state.rows[()]["flights"] == 4
    after = stats(live_server, tokens.reader)
    assert after["computations_started"] == before["computations_started"] + 1
    assert after["joined"] == before["joined"] + 1, "the second client joined the first's"
    assert after["updates_sent"] - before["updates_sent"] >= 2


def test_a_top_k_update_deletes_the_row_pushed_out(
    live_server: RunningServer, tokens: Tokens
) -> None:
    path = "/live/views/delays/top?by=flights&k=2&group_by=carrier"
    state = LiveState()
    target: dict[str, int] = {}

    def done(s: LiveState) -> bool:
        return "position" in target and s.last_id is not None and s.last_id >= target["position"]

    listening = Background(lambda: follow(live_server, tokens.reader, path, state, until=done))
    deadline = time.monotonic() + 10
    while not state.events and time.monotonic() < deadline:
        time.sleep(0.02)
    before = set(state.rows)
    target["position"] = append_flights(live_server, tokens.writer, "ZZ", 1000)
    listening.join()
    assert ("ZZ",) in state.rows and len(state.rows) == 2
    deleted = [tuple(k) for m in state.events if m.event == "update" for k in m.json["delete"]]
    assert deleted and set(deleted) <= before
    params = {"by": "flights", "k": 2, "group_by": "carrier"}
    assert state.last_id is not None
    reference = answer_at(live_server, tokens.reader, "top", params, state.last_id)
    assert reference["position"] == state.last_id
    assert_same_rows(state, reference, live_server, tokens.reader)


def test_an_idle_live_query_gets_progress(live_server: RunningServer, tokens: Tokens) -> None:
    state = LiveState()
    follow(
        live_server,
        tokens.reader,
        "/live/views/delays/kpi",
        state,
        until=lambda s: any(m.event == "progress" for m in s.events),
    )
    progress = next(m for m in state.events if m.event == "progress")
    assert progress.json["position"] == progress.position >= FLIGHTS


def test_live_queries_beyond_the_cap_get_503_with_retry_after(
    live_server: RunningServer, tokens: Tokens
) -> None:
    headers = {"Authorization": f"Bearer {tokens.capped}"}
    with httpx.Client(base_url=live_server.url, timeout=10) as client:
        opened = []
        try:
            for _ in range(LIVE_CAP):
                response = client.send(
                    client.build_request("GET", "/live/views/delays/kpi", headers=headers),
                    stream=True,
                )
                assert response.status_code == 200
                opened.append(response)
            refused = client.get("/live/views/delays/kpi", headers=headers)
        finally:
            for response in opened:
                response.close()
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["error"] == "too_many_live_queries"


def test_bad_live_queries_are_refused_before_streaming(
    live_server: RunningServer, tokens: Tokens
) -> None:
    with live_server.client(tokens.reader) as reader:
        unknown = reader.get("/live/views/nothing/kpi")
        assert unknown.status_code == 404 and unknown.json()["error"] == "unknown_view"
        past = reader.get("/live/views/delays/kpi", params={"as_of_position": 3})
        assert past.status_code == 400 and past.json()["parameter"] == "as_of_position"
        bad = reader.get("/live/views/delays/top")
        assert bad.status_code == 400 and bad.json()["parameter"] == "by"


def test_a_rebuild_sends_reset_then_a_new_snapshot(tmp_path: Path, tokens: Tokens) -> None:
    project = write_project(tmp_path)
    fill_log(tmp_path / "facta.db", 200)
    with facta_serve(tmp_path, tokens.lines, ["--project", str(project)]) as server:
        answer_at(server, tokens.reader, "kpi", {}, 200)
        state = LiveState()

        def done(s: LiveState) -> bool:
            return any(m.event == "reset" for m in s.events) and s.events[-1].event == "snapshot"

        listening = Background(
            lambda: follow(server, tokens.reader, "/live/views/delays/kpi", state, until=done)
        )
        deadline = time.monotonic() + 10
        while not state.events and time.monotonic() < deadline:
            time.sleep(0.02)
        old_hash = state.events[0].json["definition_hash"]
        project.write_text(
            project_text().replace(
                'flights = "count"', 'flights = "count"\nworst = "max(dep_delay)"'
            )
        )
        facta_apply(server.log_path, project)
        listening.join()
    kinds = [m.event for m in state.events if m.event != "progress"]
    assert kinds[0] == "snapshot" and kinds[-2:] == ["reset", "snapshot"]
    assert state.events[-1].json["definition_hash"] != old_hash
    assert "worst" in state.rows[()]


def test_fast_changes_reach_a_client_coalesced(live_server: RunningServer, tokens: Tokens) -> None:
    """Commits faster than 10 a second to a client that asked for 10 a second at most: it gets
    fewer, merged updates, still exact. (A client that falls behind gets the same without
    asking: tests/server/test_live_view_pacing.py.)"""
    path = (
        "/live/views/delays/groups?group_by=carrier&where=carrier:C1&where=carrier:C2&max_rate=10"
    )
    state = LiveState()
    target: dict[str, int] = {}

    def done(s: LiveState) -> bool:
        return "position" in target and s.last_id is not None and s.last_id >= target["position"]

    before = stats(live_server, tokens.reader)
    listening = Background(lambda: follow(live_server, tokens.reader, path, state, until=done))
    deadline = time.monotonic() + 10
    while not state.events and time.monotonic() < deadline:
        time.sleep(0.02)
    commits = 40
    # Straight to the log file (another process's appends), so commits come far faster than
    # 10 a second whatever the load on the machine.
    with SqliteLog(live_server.log_path, LogConfig(durability="normal")) as log:
        for n in range(commits):
            carrier = "C1" if n % 2 else "C2"
            data = {"carrier": carrier, "origin": "LGA", "time_hour": "2013-07-01T08:00:00Z"}
            written = log.append_sync(
                f"live-{carrier}", [NewEvent(type="FlightDeparted", data=data)]
            )
    assert written.last_position is not None
    target["position"] = written.last_position
    listening.join()
    updates = [m for m in state.events if m.event == "update"]
    after = stats(live_server, tokens.reader)
    assert 1 <= len(updates) < commits
    assert after["updates_sent"] > before["updates_sent"]
    assert state.rows[("C1",)]["flights"] == state.rows[("C2",)]["flights"] == commits // 2
    assert state.last_id is not None
    params = {"group_by": "carrier", "where": ["carrier:C1", "carrier:C2"]}
    reference = answer_at(live_server, tokens.reader, "groups", params, state.last_id)
    assert reference["position"] == state.last_id
    assert_same_rows(state, reference, live_server, tokens.reader)

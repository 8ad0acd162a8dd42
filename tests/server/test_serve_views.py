"""Views over HTTP: every shape and parameter, read-your-writes, as-of, SQL, and apply pickup.

A real ``facta serve --project`` over a log of real flights maintains the project's view in
its own threads; answers are compared with the same query made in-process on the views file.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from facta.views import open_snapshot, shapes
from facta.views.store import ViewStore, views_path
from tests.server.conftest import Tokens
from tests.server.server_process import RunningServer, facta_serve
from tests.server.view_project import facta_apply, fill_log, project_text, write_project

FLIGHTS = 2000


@pytest.fixture(scope="module")
def views_server(
    tmp_path_factory: pytest.TempPathFactory, tokens: Tokens
) -> Iterator[tuple[RunningServer, Path]]:
    workdir = tmp_path_factory.mktemp("serve-views")
    project = write_project(workdir)
    fill_log(workdir / "facta.db", FLIGHTS)
    with facta_serve(workdir, tokens.lines, ["--project", str(project)]) as running:
        with running.client(tokens.reader) as reader:
            _wait_for_position(reader, "delays", FLIGHTS)
        yield running, project


def _wait_for_position(client: httpx.Client, view: str, position: int) -> dict[str, Any]:
    answer = client.get(f"/views/{view}/kpi", params={"min_position": position, "timeout": 20})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def _flights_appended(server: RunningServer, token: str, count: int, carrier: str) -> int:
    events = [
        {
            "type": "FlightDeparted",
            "data": {
                "carrier": carrier,
                "origin": "JFK",
                "dest": "LAX",
                "dep_delay": 10.0 * n,
                "arr_delay": 5.0 * n,
                "distance": 2475,
                "time_hour": "2013-06-01T12:00:00-04:00",
            },
        }
        for n in range(count)
    ]
    with server.client(token) as writer:
        answer = writer.post(f"/log/streams/flight-{carrier}", json={"events": events})
    assert answer.status_code == 200, answer.text
    position: int = answer.json()["last_position"]
    return position


def test_views_are_listed_with_position_lag_and_rejects(
    views_server: tuple[RunningServer, Path], tokens: Tokens
) -> None:
    server, _ = views_server
    with server.client(tokens.reader) as reader:
        listed = reader.get("/views").json()
    [view] = [v for v in listed if v["name"] == "delays"]
    for field in (
        "name",
        "description",
        "position",
        "lag",
        "definition_hash",
        "cells",
        "rejected_events",
        "rejected_values",
        "unmatched",
        "maintainer",
    ):
        assert field in view, field
    assert view["description"] == "Delays per carrier and origin"
    assert view["position"] >= FLIGHTS and view["lag"] >= 0
    assert view["cells"] > 0
    assert view["maintainer"] is not None and "pid" in view["maintainer"]
    assert view["dimensions"] == ["carrier", "origin"]
    assert {m["name"] for m in view["measures"]} >= {"flights", "delay_q", "gain_cov"}


SHAPE_QUERIES: list[tuple[str, dict[str, Any], list[str]]] = [
    ("kpi", {}, []),
    ("kpi", {"where": ["carrier:UA", "carrier:AA"], "from": "2013-03-01T00:00:00-05:00"}, []),
    ("groups", {"group_by": "carrier"}, ["carrier"]),
    ("groups", {"group_by": ""}, []),
    ("groups", {}, ["carrier", "origin"]),
    ("groups", {"group_by": "origin", "per_bucket": "true"}, ["origin", "bucket"]),
    ("series", {"group_by": "", "every": "1w"}, ["bucket"]),
    ("top", {"by": "flights", "k": "3", "group_by": "carrier"}, ["carrier"]),
    ("top", {"by": "delay", "k": "2", "ascending": "true"}, ["carrier", "origin"]),
    ("top", {"by": "flights", "k": "2", "per_bucket": "true"}, ["carrier", "origin", "bucket"]),
    ("box", {"measure": "delay_q", "group_by": "origin"}, ["origin"]),
    (
        "box",
        {"measure": "delay_q", "group_by": "", "per_bucket": "true", "every": "1mo"},
        ["bucket"],
    ),
    ("heatmap", {"column": "flights", "x": "carrier", "y": "origin"}, ["carrier", "origin"]),
    ("ellipse", {"measure": "gain_cov", "group_by": "carrier"}, ["carrier"]),
]


@pytest.mark.parametrize(("shape", "params", "key"), SHAPE_QUERIES)
def test_every_shape_answers_with_its_key_columns_and_json_rows(
    views_server: tuple[RunningServer, Path],
    tokens: Tokens,
    shape: str,
    params: dict[str, Any],
    key: list[str],
) -> None:
    server, _ = views_server
    with server.client(tokens.reader) as reader:
        answer = reader.get(f"/views/delays/{shape}", params=params)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["view"] == "delays" and body["shape"] == shape
    assert body["key"] == key
    names = [c["name"] for c in body["columns"]]
    assert names[: len(key)] == key
    assert body["rows"], "every query of this log has rows"
    assert all(list(row) == names for row in body["rows"])
    keys = [tuple(row[k] for k in key) for row in body["rows"]]
    assert len(set(keys)) == len(keys), "the key identifies each row"
    if "bucket" in key:
        # Buckets are ISO-8601 with the offset of the view's zone (New York: -05:00 / -04:00).
        assert all(row["bucket"][-6:] in ("-05:00", "-04:00") for row in body["rows"])
    if shape == "top":
        assert len(body["rows"]) == int(params["k"])


def test_answers_equal_the_in_process_query_of_the_same_commit(
    views_server: tuple[RunningServer, Path], tokens: Tokens
) -> None:
    server, _ = views_server
    with server.client(tokens.reader) as reader:
        body = reader.get("/views/delays/groups", params={"group_by": "carrier"}).json()
    store = ViewStore(views_path(server.log_path))
    try:
        snapshot = open_snapshot(store, "delays", min_position=body["position"])
        table = shapes.groups(snapshot, group_by=["carrier"])
    finally:
        store.close()
    if snapshot.position == body["position"]:
        expected = {r["carrier"]: r["flights"] for r in table.to_pylist()}
        assert {r["carrier"]: r["flights"] for r in body["rows"]} == expected
    assert sum(r["flights"] for r in body["rows"]) >= FLIGHTS


def test_min_position_reads_your_own_writes_and_times_out_with_504(
    views_server: tuple[RunningServer, Path], tokens: Tokens
) -> None:
    server, _ = views_server
    position = _flights_appended(server, tokens.writer, 7, "Q1")
    with server.client(tokens.reader) as reader:
        seen = reader.get(
            "/views/delays/kpi", params={"where": "carrier:Q1", "min_position": position}
        )
        assert seen.status_code == 200, seen.text
        assert seen.json()["position"] >= position
        assert seen.json()["rows"][0]["flights"] == 7
        late = reader.get(
            "/views/delays/kpi", params={"min_position": position + 10_000, "timeout": 0.2}
        )
    assert late.status_code == 504
    assert late.json()["error"] == "min_position_timeout"
    assert "delays" in late.json()["detail"] and str(position + 10_000) in late.json()["detail"]


def test_as_of_position_time_and_known_at(
    views_server: tuple[RunningServer, Path], tokens: Tokens
) -> None:
    server, _ = views_server
    with server.client(tokens.reader) as reader:
        early = reader.get("/views/delays/kpi", params={"as_of_position": 500}).json()
        assert early["position"] == 500
        assert early["rows"][0]["flights"] == 500  # every event of this log is a flight
        now = reader.get("/views/delays/kpi").json()
        future = reader.get("/views/delays/kpi", params={"known_at": "2100-01-01T00:00:00Z"}).json()
        assert future["rows"][0]["flights"] == now["rows"][0]["flights"]
        assert future["definition_hash"] == now["definition_hash"]
        past = reader.get("/views/delays/kpi", params={"known_at": "2000-01-01T00:00:00Z"})
        assert past.json()["rows"][0]["flights"] == 0
        closed = reader.get(
            "/views/delays/kpi", params={"as_of_time": "2013-02-01T00:00:00-05:00"}
        ).json()
        january = reader.get("/views/delays/kpi", params={"to": "2013-02-01T00:00:00-05:00"}).json()
        assert closed["rows"][0]["flights"] == january["rows"][0]["flights"] > 0
        both = reader.get(
            "/views/delays/kpi",
            params={"as_of_position": 5, "known_at": "2100-01-01T00:00:00Z"},
        )
        assert both.status_code == 400 and both.json()["parameter"] == "as_of_position"
        beyond = reader.get("/views/delays/kpi", params={"as_of_position": 10**9})
        assert beyond.status_code == 400 and "the log ends at" in beyond.json()["detail"]


BAD_QUERIES: list[tuple[str, dict[str, Any], int, str]] = [
    ("/views/nothing/kpi", {}, 404, "unknown_view"),
    ("/views/delays/pie", {}, 404, "unknown_shape"),
    ("/views/delays/kpi", {"where": "nowhere:1"}, 400, "where"),
    ("/views/delays/kpi", {"where": "carrier"}, 400, "where"),
    ("/views/delays/kpi", {"from": "2013-01-01"}, 400, "from"),
    ("/views/delays/kpi", {"to": "yesterday"}, 400, "to"),
    ("/views/delays/kpi", {"group_by": "carrier"}, 400, "group_by"),
    ("/views/delays/groups", {"group_by": "tail"}, 400, "group_by"),
    ("/views/delays/series", {"every": "2d"}, 400, "every"),
    ("/views/delays/top", {}, 400, "by"),
    ("/views/delays/top", {"by": "nothing"}, 400, "by"),
    ("/views/delays/box", {"measure": "delay"}, 400, "measure"),
    ("/views/delays/ellipse", {"measure": "missing"}, 400, "measure"),
    ("/views/delays/heatmap", {"column": "flights", "x": "carrier", "y": "carrier"}, 400, "y"),
]


@pytest.mark.parametrize(("path", "params", "status", "names"), BAD_QUERIES)
def test_bad_queries_get_a_4xx_naming_the_problem(
    views_server: tuple[RunningServer, Path],
    tokens: Tokens,
    path: str,
    params: dict[str, Any],
    status: int,
    names: str,
) -> None:
    server, _ = views_server
    with server.client(tokens.reader) as reader:
        answer = reader.get(path, params=params)
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body.get("parameter", body["error"]) == names, body
    assert body["detail"]


def test_sql_is_read_only_and_sandboxed(
    views_server: tuple[RunningServer, Path], tokens: Tokens
) -> None:
    server, _ = views_server
    with server.client(tokens.reader) as reader:
        answer = reader.post(
            "/sql",
            json={
                "sql": "SELECT carrier, sum(flights) AS n FROM delays GROUP BY 1 ORDER BY 2 DESC"
            },
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["columns"] == ["carrier", "n"]
        assert sum(r["n"] for r in answer.json()["rows"]) >= FLIGHTS
        files = reader.post("/sql", json={"sql": "SELECT * FROM read_csv('/etc/passwd')"})
        assert files.status_code == 400
        assert "disabled by configuration" in files.json()["detail"]
        two = reader.post("/sql", json={"sql": "SELECT 1; SELECT 2"})
        assert two.status_code == 400 and "one SELECT" in two.json()["detail"]
    with server.client(tokens.writer) as writer:
        assert writer.post("/sql", json={"sql": "SELECT 1"}).status_code == 403


def test_processors_are_listed(views_server: tuple[RunningServer, Path], tokens: Tokens) -> None:
    server, _ = views_server
    with server.client(tokens.reader) as reader:
        answer = reader.get("/processors")
    assert answer.status_code == 200 and answer.json() == []


def test_a_facta_apply_is_picked_up_within_two_seconds(tmp_path: Path, tokens: Tokens) -> None:
    project = write_project(tmp_path)
    fill_log(tmp_path / "facta.db", 300)
    serving = facta_serve(tmp_path, tokens.lines, ["--project", str(project)])
    with serving as server, server.client(tokens.reader) as reader:
        before = _wait_for_position(reader, "delays", 300)
        changed = project_text().replace(
            'flights = "count"', 'flights = "count"\nworst = "max(dep_delay)"'
        )
        changed += project_text("second", "another view")
        project.write_text(changed)
        applied = facta_apply(server.log_path, project, cwd=tmp_path)
        assert "rebuild  delays" in applied
        done = time.monotonic()
        deadline, seen = done + 2.0, {}
        while time.monotonic() < deadline:
            seen = {v["name"]: v for v in reader.get("/views").json()}
            if (
                seen.get("delays", {}).get("definition_hash") != before["definition_hash"]
                and seen["delays"]["maintainer"] is not None
                and "second" in seen
            ):
                break
            time.sleep(0.05)
        assert seen["delays"]["definition_hash"] != before["definition_hash"]
        assert seen["delays"]["maintainer"] is not None, "the server took the view back"
        assert "second" in seen
        # The server maintains the rebuilt generation: new events reach it.
        position = _flights_appended(server, tokens.writer, 3, "Z9")
        after = reader.get(
            "/views/delays/kpi",
            params={"where": "carrier:Z9", "min_position": position, "timeout": 10},
        )
        assert after.status_code == 200, after.text
        assert after.json()["rows"][0]["worst"] == 20.0


def test_a_declared_view_not_built_yet_is_waited_for_then_503_not_404(
    tmp_path: Path, tokens: Tokens
) -> None:
    """A request right after start-up, before a declared view's first build has committed,
    waits for it; past its timeout it gets 503 with Retry-After (it is coming), never 404."""
    project = write_project(tmp_path)
    fill_log(tmp_path / "facta.db", 300)
    holder = ViewStore(views_path(tmp_path / "facta.db"))
    holder.lock("delays")  # another maintainer holds the view: the server's must wait
    try:
        with (
            facta_serve(tmp_path, tokens.lines, ["--project", str(project)]) as server,
            server.client(tokens.reader) as reader,
        ):
            started = time.monotonic()
            waiting = reader.get("/views/delays/kpi", params={"timeout": 0.5})
            assert time.monotonic() - started >= 0.5  # it waited for the build first
            assert waiting.status_code == 503, waiting.text
            assert waiting.json()["error"] == "view_not_built"
            assert "delays" in waiting.json()["detail"]
            assert waiting.headers["Retry-After"] == "1"
            holder.unlock("delays")
            built = reader.get("/views/delays/kpi", params={"timeout": 20})
            assert built.status_code == 200, built.text  # its first generation, catching up
            caught_up = _wait_for_position(reader, "delays", 300)
            assert caught_up["rows"][0]["flights"] == 300
            assert reader.get("/views/nothing/kpi").status_code == 404  # unknown stays 404
    finally:
        holder.close()

"""The dashboard routes on a real server: the page and its files, the dashboards with their
panels' queries, saving into facta.toml (admin, CSRF, 409 when stale) and plan afterwards."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from facta.log import SqliteLog
from facta.views.cli import views_app
from tests.server.conftest import Tokens
from tests.server.server_process import RunningServer, facta_serve
from tests.server.sse_reader import sse_messages
from tests.server.view_project import fill_log, project_text

DASHBOARD = """
# the team's dashboard
[dashboards.ops]
title = "Operations"

[[dashboards.ops.panels]]
id = "flights"
kind = "kpi"
view = "delays"
measure = "flights"
range = "7d"

[[dashboards.ops.panels]]
id = "delay_by_carrier"  # box plots
kind = "box"
view = "delays"
measure = "delay_q"
group_by = ["carrier"]
"""
NEW_PANEL = {"id": "by_origin", "kind": "bar", "view": "delays", "measure": "flights",
             "group_by": ["origin"], "k": 3}  # fmt: skip


def _plan(log: Path, project: Path) -> list[str]:
    result = CliRunner().invoke(views_app, ["plan", "--log", str(log), "--project", str(project)])
    assert result.exit_code == 0, result.output
    return list(result.output.strip().splitlines())


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, tokens: Tokens
) -> Iterator[tuple[RunningServer, Path]]:
    folder = tmp_path_factory.mktemp("dashboards")
    project = folder / "facta.toml"
    project.write_text(project_text() + DASHBOARD)
    fill_log(folder / "facta.db", 500)
    result = CliRunner().invoke(
        views_app, ["apply", "--log", str(folder / "facta.db"), "--project", str(project)]
    )
    assert result.exit_code == 0, result.output
    with facta_serve(folder, tokens.lines, ["--project", str(project)]) as server:
        yield server, project


def _version(project: Path) -> str:
    return hashlib.sha256(project.read_bytes()).hexdigest()


def _ops(server: RunningServer, token: str) -> dict[str, Any]:
    with server.client(token) as client:
        answer = client.get("/dashboards")
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_the_page_and_its_files_are_served_without_a_token(
    served: tuple[RunningServer, Path],
) -> None:
    server, _ = served
    with server.client() as anonymous:
        page = anonymous.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert '<script src="/static/echarts/echarts.min.js">' in page.text
        assert "http" not in page.text.replace("http-equiv", "")  # nothing from another host
        files = ["echarts/echarts.min.js", "echarts/LICENSE", "echarts/NOTICE"]
        files += ["dashboard/dashboard.js", "dashboard/live.js", "dashboard/charts.js"]
        for name in files:
            assert anonymous.get(f"/static/{name}").status_code == 200, name
        assert "Apache ECharts" in anonymous.get("/static/echarts/NOTICE").text
        assert anonymous.get("/static/../cli.py").status_code == 404
        assert anonymous.get("/dashboards").status_code == 401


def test_dashboards_list_panels_with_their_queries_and_the_views(
    served: tuple[RunningServer, Path], tokens: Tokens
) -> None:
    server, project = served
    body = _ops(server, tokens.reader)
    assert body["version"] == _version(project) and body["project"] == str(project)
    (ops,) = [d for d in body["dashboards"] if d["name"] == "ops"]
    assert ops["title"] == "Operations"
    kpi, box = ops["panels"][:2]
    assert (kpi["shape"], kpi["params"], kpi["range_seconds"]) == ("kpi", {}, 7 * 86400)
    assert (box["shape"], box["params"]) == ("box", {"measure": "delay_q", "group_by": "carrier"})
    view = body["views"]["delays"]
    assert view["dimensions"] == ["carrier", "origin"] and view["width"] == "1d"
    assert view["measures"]["delay_q"] == "quantiles" and "delay_q_p50" in view["columns"]
    assert view["latest"] is not None and view["latest"].endswith(("-05:00", "-04:00"))
    with server.client(tokens.reader) as client:
        clock = client.get("/dashboards/clock").json()
    with SqliteLog(server.log_path) as log:
        assert clock["head"] == log.head_sync()
    assert clock["views"]["delays"]["latest_epoch"] == view["latest_epoch"]


def test_saving_writes_the_file_and_plan_has_nothing_to_do(
    served: tuple[RunningServer, Path], tokens: Tokens
) -> None:
    server, project = served
    body = _ops(server, tokens.admin)
    ops = next(d for d in body["dashboards"] if d["name"] == "ops")
    panels = [{k: v for k, v in p.items() if k not in ("shape", "params", "range_seconds")}
              for p in ops["panels"]]  # fmt: skip
    before = project.read_text()
    with server.client(tokens.admin) as client:
        answer = client.put(
            "/dashboards/ops",
            json={"dashboard": {"title": "Operations", "panels": [*panels, NEW_PANEL]},
                  "version": body["version"]},
        )  # fmt: skip
    assert answer.status_code == 200, answer.text
    saved = answer.json()
    assert saved["version"] == _version(project)
    assert saved["dashboard"]["panels"][-1]["params"] == {
        "by": "flights",
        "k": "3",
        "group_by": "origin",
    }
    after = project.read_text()
    assert after.startswith(before.rstrip("\n"))  # comments and all kept, the panel appended
    assert 'id = "delay_by_carrier"  # box plots' in after
    lines = _plan(server.log_path, project)
    assert all(line.startswith("keep") for line in lines) and len(lines) == 2, lines
    assert [p["id"] for p in _ops(server, tokens.reader)["dashboards"][0]["panels"]] == [
        "flights",
        "delay_by_carrier",
        "by_origin",
    ]


def test_a_stale_version_is_refused_with_409_and_nothing_written(
    served: tuple[RunningServer, Path], tokens: Tokens
) -> None:
    server, project = served
    before = project.read_text()
    with server.client(tokens.admin) as client:
        answer = client.put(
            "/dashboards/ops",
            json={"dashboard": {"panels": []}, "version": hashlib.sha256(b"old").hexdigest()},
        )
    assert answer.status_code == 409
    assert answer.json()["error"] == "project_changed"
    assert "changed since it was loaded" in answer.json()["detail"]
    assert project.read_text() == before


def test_a_bad_panel_is_refused_with_400_naming_it(
    served: tuple[RunningServer, Path], tokens: Tokens
) -> None:
    server, project = served
    before = project.read_text()
    bad = {**NEW_PANEL, "group_by": ["tail"]}
    with server.client(tokens.admin) as client:
        answer = client.put(
            "/dashboards/ops",
            json={"dashboard": {"panels": [bad]}, "version": _version(project)},
        )
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_dashboard"
    assert answer.json()["detail"].startswith(
        "dashboard 'ops', panel 'by_origin', group_by: 'tail' is not a dimension"
    )
    assert project.read_text() == before


def test_a_session_cookie_saves_only_with_the_csrf_token(
    served: tuple[RunningServer, Path], tokens: Tokens
) -> None:
    server, project = served
    with server.client() as browser:
        session = browser.post(
            "/auth/session", headers={"Authorization": f"Bearer {tokens.admin}"}
        ).json()
        body = {"dashboard": {"title": "Ops", "panels": [NEW_PANEL]}, "version": _version(project)}
        refused = browser.put("/dashboards/cookie", json=body)
        assert refused.status_code == 403 and refused.json()["error"] == "csrf_failed"
        saved = browser.put(
            "/dashboards/cookie", json=body, headers={"X-CSRF-Token": session["csrf_token"]}
        )
        assert saved.status_code == 200, saved.text
    assert "[dashboards.cookie]" in project.read_text()


def test_without_a_project_there_is_nowhere_to_save(tmp_path: Path, tokens: Tokens) -> None:
    with facta_serve(tmp_path, tokens.lines) as server, server.client(tokens.admin) as client:
        listed = client.get("/dashboards").json()
        assert listed["dashboards"] == [] and listed["version"] is None
        answer = client.put(
            "/dashboards/ops", json={"dashboard": {"panels": []}, "version": "0" * 64}
        )
    assert answer.status_code == 409 and answer.json()["error"] == "no_project"


def test_several_live_queries_share_one_connection_and_resume(
    served: tuple[RunningServer, Path], tokens: Tokens
) -> None:
    server, _ = served
    queries = ["delays/kpi", "delays/groups?group_by=carrier&where=origin:JFK"]
    flight = {"carrier": "ZZ", "origin": "JFK", "dest": "LAX", "dep_delay": 999.0,
              "arr_delay": 990.0, "time_hour": "2013-01-01T15:00:00Z"}  # fmt: skip
    with server.client(tokens.reader) as client:
        expected = [client.get(f"/views/{q}").json() for q in queries]
        with client.stream("GET", "/live/queries", params={"q": queries}) as live:
            assert live.status_code == 200
            messages = sse_messages(live)
            snapshots = [next(messages), next(messages)]
            assert sorted(m.json["query"] for m in snapshots) == [0, 1]
            for message in snapshots:
                assert message.event == "snapshot"
                body, answer = message.json, expected[message.json["query"]]
                assert body["position"] == answer["position"] and body["key"] == answer["key"]
                assert body["rows"] == answer["rows"]
            position = snapshots[-1].position
            with server.client(tokens.writer) as writer:
                appended = writer.post(
                    "/log/streams/flight-ZZ1",
                    json={"events": [{"type": "FlightDeparted", "data": flight}]},
                )
                assert appended.status_code == 200, appended.text
            updates = {}
            for message in messages:
                if message.event == "update":
                    updates[message.json["query"]] = message.json
                if len(updates) == 2:
                    break
            assert updates[0]["upsert"][0]["flights"] == expected[0]["rows"][0]["flights"] + 1
            assert [r["carrier"] for r in updates[1]["upsert"]] == ["ZZ"]
        # Resuming from the snapshots' id brings both queries' changes, coalesced.
        headers = {"Last-Event-ID": str(position)}
        with client.stream("GET", "/live/queries", params={"q": queries}, headers=headers) as again:
            resumed = sse_messages(again)
            first, second = next(resumed), next(resumed)
        assert {first.event, second.event} == {"update"}
        zz = next(m.json for m in (first, second) if m.json["query"] == 1)
        assert [r["carrier"] for r in zz["upsert"]] == ["ZZ"]


@pytest.mark.parametrize(
    ("queries", "problem"),
    [
        (["delays"], "q[0]: expected VIEW/SHAPE?PARAMETERS"),
        (["delays/kpi?colour=red"], "q[0]: a live query takes no parameter 'colour'"),
        (["delays/kpi", "delays/top?k=x"], "q[1]: k must be a whole number"),
        (["delays/box"], "measure: the box shape needs it"),
        (["delays/kpi"] * 33, "q: expected 1 to 32 queries, found 33"),
    ],
)
def test_bad_live_queries_are_refused_naming_the_query(
    served: tuple[RunningServer, Path], tokens: Tokens, queries: list[str], problem: str
) -> None:
    server, _ = served
    with server.client(tokens.reader) as client:
        answer = client.get("/live/queries", params={"q": queries})
    assert answer.status_code == 400, answer.text
    assert problem in answer.json()["detail"]

from __future__ import annotations

import json
from pathlib import Path

import pytest

from facta import demo
from facta.dashboards import AppliedDashboards
from facta.demo.replay import replay
from facta.log import SqliteLog
from facta.views.store import ViewStore, views_path


def test_demo_prepares_a_log_in_event_time_order_with_the_project_applied(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    # Weather is the same importer on another file (covered in tests/cli); skip it for time.
    log, project, rest = demo.prepare(
        tmp_path / "demo", "2013-01-03", progress=False, tables=demo.TABLES[:2]
    )
    out = capfd.readouterr().out
    summaries = [json.loads(line) for line in out.splitlines() if line.startswith('{"file"')]
    flights_before = summaries[2]["events"]
    assert [(s["records"], s["rejected"]) for s in summaries[:2]] == [(16, 0), (1458, 0)]
    assert 1000 < flights_before < 3000 and summaries[2]["rejected"] == 0
    assert "$ facta apply --log" in out and "create   dashboard flights" in out
    with SqliteLog(log) as opened:
        assert opened.head_sync() == 16 + 1458 + flights_before
        (airport,) = opened.read_stream_sync("airport-JFK")
        assert airport.data["name"] == "John F Kennedy Intl"
        flights = opened.read_all_sync(after=1474, limit=5000)
    times = [e.data["time_hour"] for e in flights]
    assert len(times) == flights_before and times == sorted(times) and times[-1] < "2013-01-03"
    replay_times = [line.rsplit(",", 1)[1] for line in rest.read_text().splitlines()[1:]]
    assert replay_times == sorted(replay_times) and replay_times[0] >= "2013-01-03"
    assert len(replay_times) + flights_before == 336_776
    store = ViewStore(views_path(log))
    assert sorted(v.view for v in store.views()) == [
        "destinations",
        "flights",
        "hourly",
        "week_hours",
    ]
    assert all(v.checkpoint == 16 + 1458 + flights_before for v in store.views())
    store.close()
    with AppliedDashboards(log) as applied:
        assert list(applied.all()) == ["flights"]
    assert project.read_text() == demo.project_text()

    # The replay appends the next flights in time order, at the rate asked for.
    done = replay(log, rest, "FlightDeparted", rate=2000.0, duration=0.5, progress=False)
    assert done >= 200
    with SqliteLog(log) as opened:
        after = 16 + 1458 + flights_before
        replayed = [e.data["time_hour"] for e in opened.read_all_sync(after=after, limit=5000)]
    assert replayed == replay_times[: len(replayed)] and len(replayed) == done

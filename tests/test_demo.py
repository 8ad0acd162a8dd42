from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from facta.dashboards import AppliedDashboards
from facta.demo import TABLES, prepare, project_text
from facta.demo.replay import replay
from facta.log import SqliteLog
from facta.views.store import ViewStore, views_path


def test_demo_prepares_a_log_in_event_time_order_with_the_project_applied(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    # Weather is the same importer on another file (covered in tests/cli); skip it for time.
    log, project, rest = prepare(tmp_path / "demo", "2013-01-03", progress=False, tables=TABLES[:2])
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
    assert project.read_text() == project_text()

    # The replay appends the next flights in time order, at the rate asked for.
    done = replay(log, rest, "FlightDeparted", rate=2000.0, duration=0.5, progress=False)
    assert done >= 200
    with SqliteLog(log) as opened:
        after = 16 + 1458 + flights_before
        replayed = [e.data["time_hour"] for e in opened.read_all_sync(after=after, limit=5000)]
    assert replayed == replay_times[: len(replayed)] and len(replayed) == done


def test_make_demo_serves_the_dashboard_replays_and_stops_after_its_duration(
    tmp_path: Path,
) -> None:
    command = [sys.executable, "-m", "facta.demo", "--dir", str(tmp_path / "demo")]
    command += ["--cutoff", "2013-01-02", "--duration", "3", "--rate", "100", "--port", "0"]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path
    )
    assert process.stdout is not None
    lines = []
    try:
        for line in process.stdout:
            lines.append(line)
            if line.startswith("The dashboard: "):
                url, _, token = line.split()[-1].partition("/#token=")
                headers = {"Authorization": f"Bearer {token}"}
                listed = httpx.get(f"{url}/dashboards", headers=headers, timeout=30).json()
                assert [d["name"] for d in listed["dashboards"]] == ["flights"]
                assert httpx.get(f"{url}/", timeout=30).status_code == 200
        assert process.wait(120) == 0, "".join(lines)
    finally:
        if process.poll() is None:
            process.kill()
    (summary,) = [line for line in lines if line.startswith("replayed ")]
    assert 0 < int(summary.split()[1].replace(",", "")) <= 100 * 4

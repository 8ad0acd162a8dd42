"""``facta views``: list, run and rebuild through the typer sub-app."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from facta.views.cli import views_app

PROJECT = """
[views.delays]
source = { types = ["FlightDeparted"] }
fields = { carrier = "string", origin = "string", dep_delay = "double", time_hour = "string" }
dimensions = ["carrier"]
bucket = { field = "time_hour", width = "1d", timezone = "America/New_York" }
measures = { flights = "count", delay = "mean(dep_delay)" }
"""


def test_run_list_and_rebuild(flights_log: Path, tmp_path: Path) -> None:
    project = tmp_path / "facta.toml"
    project.write_text(PROJECT)
    runner = CliRunner()
    common = ["--log", str(flights_log), "--project", str(project)]
    ran = runner.invoke(views_app, ["run", "--once", *common])
    assert ran.exit_code == 0, ran.output
    assert "delays: checkpoint 3000" in ran.output
    listed = runner.invoke(views_app, ["--log", str(flights_log)], env={"COLUMNS": "200"})
    assert listed.exit_code == 0, listed.output
    row = next(line for line in listed.output.splitlines() if "delays" in line)
    assert "3000" in row and "│ 0 " in row  # checkpoint 3000, lag 0
    sql = runner.invoke(
        views_app,
        [
            "sql",
            "SELECT sum(flights) AS n, 'NaN'::DOUBLE AS bad FROM delays",
            "--json",
            "--log",
            str(flights_log),
        ],
    )
    assert sql.exit_code == 0, sql.output
    assert sql.output.strip() == '{"n": 3000, "bad": null}'
    rebuilt = runner.invoke(views_app, ["rebuild", "delays", *common])
    assert rebuilt.exit_code == 0, rebuilt.output
    assert "delays: generation 2 at checkpoint 3000" in rebuilt.output


def test_errors_are_one_line_and_non_zero(flights_log: Path, tmp_path: Path) -> None:
    project = tmp_path / "facta.toml"
    project.write_text(PROJECT.replace('"mean(dep_delay)"', '"mean(carrier)"'))
    runner = CliRunner()
    bad = runner.invoke(
        views_app, ["run", "--once", "--log", str(flights_log), "--project", str(project)]
    )
    assert bad.exit_code == 1
    assert len(bad.output.strip().splitlines()) == 1
    project.write_text(PROJECT)
    assert "view 'delays', measures.delay: mean needs a numeric field" in bad.output
    missing = runner.invoke(
        views_app, ["rebuild", "nosuch", "--log", str(flights_log), "--project", str(project)]
    )
    assert missing.exit_code == 1
    assert "defines no view 'nosuch' (views: delays)" in missing.output


def test_run_follows_the_log_until_terminated(flights_log: Path, tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    from facta.log import NewEvent, SqliteLog
    from facta.views import ViewStore, open_snapshot, views_path
    from facta.views.shapes import kpi
    from tests.views.conftest import FAST

    project = tmp_path / "facta.toml"
    project.write_text(PROJECT)
    code = "from facta.views.cli import views_app; views_app()"
    args = ["run", "--log", str(flights_log), "--project", str(project)]
    follower = subprocess.Popen(
        [sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True
    )
    try:
        store = ViewStore(views_path(flights_log))
        assert open_snapshot(store, "delays", min_position=3000, timeout=30).position >= 3000
        data = {
            "carrier": "ZZ",
            "origin": "JFK",
            "dep_delay": 1.0,
            "time_hour": "2013-05-05T10:00:00Z",
        }
        with SqliteLog(flights_log, FAST) as log:
            written = log.append_sync("late", [NewEvent(type="FlightDeparted", data=data)])
        assert written.last_position is not None
        # Read-your-writes: wait until the follower has applied the append.
        snapshot = open_snapshot(store, "delays", min_position=written.last_position, timeout=30)
        assert kpi(snapshot, where={"carrier": "ZZ"}).column("flights").to_pylist() == [1]
        assert (
            store.holder("delays") == f"pid {follower.pid} on {__import__('socket').gethostname()}"
        )
    finally:
        follower.send_signal(signal.SIGTERM)
        out, _ = follower.communicate(timeout=30)
    assert follower.returncode == 0, out
    assert f"delays: checkpoint {written.last_position}" in out
    assert store.holder("delays") is None  # the lock is released on the way out

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

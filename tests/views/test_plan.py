"""Plan and apply: views follow the project file; applying twice does nothing the second time."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from facta.views import ViewStore, views_path
from facta.views.cli import views_app

TABLES = """
[tables.airports]
source = { types = ["AirportListed"] }
key = ["faa"]
fields = { faa = "string", alt = "bigint" }
"""
DELAYS = """
[views.delays]
description = "{description}"
source = {{ types = ["FlightDeparted"] }}
fields = {{ carrier = "string", dep_delay = "double", dest = "string" }}
enrich = {{ a = {{ table = "airports", on = {{ faa = "dest" }} }} }}
dimensions = ["carrier"]
measures = {{ flights = "count", delay = "{measure}" }}
"""
COUNTS = """
[views.counts]
source = { types = ["FlightDeparted"] }
fields = { origin = "string" }
dimensions = ["origin"]
measures = { flights = "count" }
"""


def test_plan_and_apply_follow_the_project(flights_log: Path, tmp_path: Path) -> None:
    project = tmp_path / "facta.toml"
    runner = CliRunner()
    common = ["--log", str(flights_log), "--project", str(project)]

    def run(command: str, text: str) -> list[list[str]]:
        project.write_text(text)
        result = runner.invoke(views_app, [command, *common])
        assert result.exit_code == 0, result.output
        return [line.split(":")[0].split() for line in result.output.strip().splitlines()]

    first = TABLES + DELAYS.format(description="d", measure="mean(dep_delay)") + COUNTS
    assert run("plan", first) == [["create", "delays"], ["create", "counts"]]
    assert run("apply", first) == [["create", "delays"], ["create", "counts"]]
    assert run("apply", first) == [["nothing", "to", "do"]]
    assert run("plan", first) == [["keep", "delays"], ["keep", "counts"]]
    described = TABLES + DELAYS.format(description="new words", measure="mean(dep_delay)") + COUNTS
    assert run("apply", described) == [["change", "delays"]]
    changed_table = described.replace('alt = "bigint"', 'alt = "double"')
    assert run("plan", changed_table) == [["rebuild", "delays"], ["keep", "counts"]]
    assert run("apply", changed_table) == [["rebuild", "delays"]]
    dropped = TABLES + DELAYS.format(description="new words", measure="max(dep_delay)")
    dropped = dropped.replace('alt = "bigint"', 'alt = "double"')
    assert run("apply", dropped) == [["rebuild", "delays"], ["drop", "counts"]]
    assert run("apply", dropped) == [["nothing", "to", "do"]]
    store = ViewStore(views_path(flights_log))
    assert [v.view for v in store.views()] == ["delays"]
    assert store.current("delays").definition["description"] == "new words"  # type: ignore[union-attr]
    assert [a[:2] for a in store.applied()] == [
        ("delays", "create"),
        ("counts", "create"),
        ("delays", "change"),
        ("delays", "rebuild"),
        ("delays", "rebuild"),
        ("counts", "drop"),
    ]

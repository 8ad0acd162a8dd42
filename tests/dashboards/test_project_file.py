"""Saving a dashboard into facta.toml: comments kept, atomic, refused when stale; plan/apply."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from facta.dashboards import (
    AppliedDashboards,
    Dashboard,
    Panel,
    StaleProject,
    file_version,
    save_dashboard,
)
from facta.dashboards.definition import load_dashboard, read_project
from facta.demo import project_text
from facta.log import LogConfig, SqliteLog
from facta.views.cli import views_app
from tests.views.flights import append_flights, flight_rows

NEW_PANEL = Panel(
    id="delay_by_origin",
    title="Delay by origin",
    kind="box",
    view="flights",
    measure="delay_q",
    group_by=("origin",),
    where={"carrier": ["UA", "AA"]},
)


def _demo_dashboard(project: Path) -> Dashboard:
    return load_dashboard("flights", read_project(project)["dashboards"]["flights"])


def test_saving_adds_a_panel_and_keeps_every_comment(tmp_path: Path) -> None:
    project = tmp_path / "facta.toml"
    project.write_text(project_text())
    before = project.read_text()
    dashboard = _demo_dashboard(project)
    grown = dashboard.model_copy(update={"panels": (*dashboard.panels, NEW_PANEL)})
    version = save_dashboard(project, grown, file_version(project))
    after = project.read_text()
    assert version == file_version(project) != "" and after != before
    comments = [line for line in before.splitlines() if line.lstrip().startswith("#")]
    assert len(comments) >= 4
    assert [line for line in after.splitlines() if line.lstrip().startswith("#")] == comments
    assert after.startswith(before.rstrip("\n"))  # everything before stays byte for byte
    assert _demo_dashboard(project) == grown
    assert list(tmp_path.iterdir()) == [project]  # no temporary file left behind


def test_saving_the_same_dashboard_changes_nothing(tmp_path: Path) -> None:
    project = tmp_path / "facta.toml"
    project.write_text(project_text())
    version = file_version(project)
    assert save_dashboard(project, _demo_dashboard(project), version) == version
    assert project.read_text() == project_text()


def test_a_changed_file_is_refused_and_left_alone(tmp_path: Path) -> None:
    project = tmp_path / "facta.toml"
    project.write_text(project_text())
    loaded = file_version(project)
    edited = project_text() + "\n# an edit made while the page was open\n"
    project.write_text(edited)
    with pytest.raises(StaleProject, match="changed since it was loaded") as caught:
        save_dashboard(project, _demo_dashboard(project), loaded)
    assert caught.value.found == file_version(project)
    assert project.read_text() == edited


def test_removing_and_reordering_panels_keeps_unchanged_panels_comments(tmp_path: Path) -> None:
    project = tmp_path / "facta.toml"
    project.write_text(project_text())
    dashboard = _demo_dashboard(project)
    fewer = dashboard.model_copy(update={"panels": dashboard.panels[1:][::-1]})
    save_dashboard(project, fewer, file_version(project))
    assert _demo_dashboard(project) == fewer
    text = project.read_text()
    assert text.startswith(project_text().split("[views.hourly]")[0])
    comments = [line for line in project_text().splitlines() if line.startswith("#")]
    assert [line for line in text.splitlines() if line.startswith("#")] == comments


@pytest.fixture
def demo_log(tmp_path: Path) -> Path:
    path = tmp_path / "facta.db"
    with SqliteLog(path, LogConfig(durability="normal")) as log:
        append_flights(log, flight_rows(400))
    return path


def _cli(*args: str) -> tuple[int, list[str]]:
    result = CliRunner().invoke(views_app, list(args))
    return result.exit_code, result.output.strip().splitlines()


def test_plan_and_apply_cover_dashboards(demo_log: Path, tmp_path: Path) -> None:
    project = tmp_path / "facta.toml"
    project.write_text(project_text())
    common = ["--log", str(demo_log), "--project", str(project)]
    code, lines = _cli("plan", *common)
    assert code == 0 and lines[-1] == "create   dashboard flights: not applied yet"
    code, lines = _cli("apply", *common)
    assert code == 0 and lines[-1] == "create   dashboard flights: not applied yet"
    code, lines = _cli("plan", *common)
    assert code == 0 and all(line.startswith("keep") for line in lines) and len(lines) == 5

    # What the page's save does: write the file, record the dashboard applied.
    dashboard = _demo_dashboard(project)
    grown = dashboard.model_copy(update={"panels": (*dashboard.panels, NEW_PANEL)})
    save_dashboard(project, grown, file_version(project))
    with AppliedDashboards(demo_log) as applied:
        applied.record(grown)
        assert applied.all() == {"flights": grown}
    code, lines = _cli("plan", *common)
    assert code == 0 and all(line.startswith("keep") for line in lines), lines

    project.write_text(project.read_text().replace('title = "Delay by origin"', 'title = "x"'))
    code, lines = _cli("plan", *common)
    assert lines[-1] == "change   dashboard flights: panels or title changed"
    project.write_text(project_text().split("[dashboards.flights]")[0])
    code, lines = _cli("apply", *common)
    assert lines == ["drop     dashboard flights: no longer declared"]
    with AppliedDashboards(demo_log) as applied:
        assert applied.all() == {}


def test_plan_refuses_a_bad_panel_naming_it(demo_log: Path, tmp_path: Path) -> None:
    project = tmp_path / "facta.toml"
    project.write_text(project_text().replace('measure = "delay_q"', 'measure = "delay"', 1))
    code, lines = _cli("plan", "--log", str(demo_log), "--project", str(project))
    assert code == 1
    assert " ".join(lines) == (
        "error: dashboard 'flights', panel 'delay_by_carrier', measure: measure 'delay' is "
        "mean, this panel needs quantiles"
    )

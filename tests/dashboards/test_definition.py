"""Dashboard definitions: the demo project is valid, every bad panel is refused by name."""

from __future__ import annotations

from typing import Any

import pytest

from facta.dashboards import PANEL_KINDS, DashboardError, Panel, ViewCatalog, load_dashboards
from facta.dashboards.definition import read_project
from facta.demo import project_text
from facta.views.compile import compile_view
from facta.views.definition import load_views


@pytest.fixture(scope="module")
def catalogs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ViewCatalog]:
    path = tmp_path_factory.mktemp("project") / "facta.toml"
    path.write_text(project_text())
    return {v.name: ViewCatalog.of(compile_view(v)) for v in load_views(path)}


def test_the_demo_dashboard_uses_every_panel_kind(
    catalogs: dict[str, ViewCatalog], tmp_path: Any
) -> None:
    path = tmp_path / "facta.toml"
    path.write_text(project_text())
    (dashboard,) = load_dashboards(read_project(path), catalogs)
    assert sorted({p.kind for p in dashboard.panels}) == sorted(PANEL_KINDS)
    queries = {p.id: p.query() for p in dashboard.panels}
    assert queries["delay_by_carrier"] == ("box", {"measure": "delay_q", "group_by": "carrier"})
    assert queries["delay_by_day"] == (
        "box",
        {"measure": "delay_q", "group_by": "", "per_bucket": "true", "every": "1d"},
    )
    assert queries["hour_weekday"] == (
        "heatmap",
        {"column": "delay", "x": "local_hour", "y": "weekday"},
    )
    assert queries["top_destinations"] == ("top", {"by": "flights", "k": "10", "group_by": "dest"})
    assert [p.range_seconds() for p in dashboard.panels][:3] == [7 * 86400, 7 * 86400, 14 * 86400]


BAD_PANELS: list[tuple[dict[str, Any], str, str]] = [
    ({"view": "nope"}, "view", "unknown view 'nope'"),
    ({"measure": "delay_q_p99"}, "measure", "has no output column 'delay_q_p99'"),
    ({"kind": "box", "measure": "delay"}, "measure", "measure 'delay' is mean, this panel needs"),
    ({"kind": "ellipse", "measure": "delay_q"}, "measure", "needs covariance or correlation"),
    ({"kind": "bar", "group_by": ["dest"]}, "group_by", "'dest' is not a dimension"),
    ({"where": {"tail": "N1"}}, "where", "'tail' is not a dimension of view 'flights'"),
    ({"kind": "line", "group_by": []}, "group_by", "exactly one dimension"),
    ({"kind": "heatmap", "x": "carrier"}, "y", "a heat map needs x and y"),
    ({"kind": "heatmap", "x": "carrier", "y": "carrier"}, "y", "x and y must differ"),
    ({"x": "carrier"}, "x", "only heat maps take x and y"),
    ({"k": 3}, "k", "only bar charts"),
    ({"kind": "series", "every": "1h"}, "every", "not a multiple of view 'flights'"),
    ({"every": "1d"}, "every", "only time series and box-plot sequences"),
    ({"range": "7 days"}, "range", "must be a number and h, d or w"),
    ({"kind": "pie"}, "kind", "Input should be"),
    ({"id": "Bad Id"}, "id", "panel id 'Bad Id' must match"),
    ({"colour": "red"}, "colour", "Extra inputs are not permitted"),
]


@pytest.mark.parametrize(("change", "field", "problem"), BAD_PANELS)
def test_a_bad_panel_is_refused_naming_dashboard_panel_and_field(
    catalogs: dict[str, ViewCatalog], change: dict[str, Any], field: str, problem: str
) -> None:
    panel = {"id": "p1", "kind": "kpi", "view": "flights", "measure": "flights", **change}
    with pytest.raises(DashboardError) as caught:
        load_dashboards({"dashboards": {"ops": {"panels": [panel]}}}, catalogs)
    error = caught.value
    assert (error.dashboard, error.field) == ("ops", field)
    assert error.panel == panel.get("id", "p1")
    assert problem in error.problem
    assert str(error).startswith(f"dashboard 'ops', panel {error.panel!r}, {field}: ")


def test_two_panels_with_one_id_are_refused(catalogs: dict[str, ViewCatalog]) -> None:
    panel = {"id": "p1", "kind": "kpi", "view": "flights", "measure": "flights"}
    with pytest.raises(DashboardError, match="dashboard 'ops', panel 'p1', id: used by two"):
        load_dashboards({"dashboards": {"ops": {"panels": [panel, panel]}}}, catalogs)


def test_a_panel_written_back_reads_the_same() -> None:
    panel = Panel.model_validate(
        {"id": "p", "kind": "bar", "view": "v", "measure": "m", "group_by": ["a"], "k": 5}
    )
    assert Panel.model_validate(panel.model_dump(mode="json", exclude_defaults=True)) == panel

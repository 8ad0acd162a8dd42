"""Dashboard definitions: ``[dashboards.NAME]`` tables of ``facta.toml`` and their panels.

A panel asks one view one question and draws the answer. Its ``kind`` picks the chart and the
query shape (see :data:`SHAPES`); ``measure`` names an output column (or, for box plots and
ellipses, a ``quantiles`` or ``covariance``/``correlation`` measure); ``group_by``, ``every``,
``x``/``y``, ``where`` and ``k`` are the query's parameters; ``range`` (``"7d"``, ``"12h"``,
``"2w"``) keeps the buckets of that span before the view's latest event time.

>>> panel = Panel.model_validate({"id": "delays", "kind": "box", "view": "flights",
...                               "measure": "delay_q", "group_by": ["carrier"]})
>>> panel.query()
('box', {'measure': 'delay_q', 'group_by': 'carrier'})
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from facta.views import calendar
from facta.views.compile import CompiledView
from facta.views.definition import NAME

PanelKind = Literal["kpi", "bar", "line", "series", "box", "box_sequence", "heatmap", "ellipse"]
PANEL_KINDS: Final[tuple[str, ...]] = PanelKind.__args__  # type: ignore[attr-defined]
# The view query shape each panel kind draws.
SHAPES: Final = {
    "kpi": "kpi",
    "bar": "top",
    "line": "groups",
    "series": "series",
    "box": "box",
    "box_sequence": "box",
    "heatmap": "heatmap",
    "ellipse": "ellipse",
}
RANGE: Final = re.compile(r"([1-9][0-9]{0,4})(h|d|w)")
RANGE_SECONDS: Final = {"h": 3600, "d": 86400, "w": 7 * 86400}
Scalar = str | int | float | bool


class DashboardError(ValueError):
    """A dashboard that cannot be used: names the dashboard, the panel, the field, the problem."""

    def __init__(self, dashboard: str, panel: str | None, field: str, problem: str) -> None:
        where = f"dashboard {dashboard!r}" + (f", panel {panel!r}" if panel else "")
        super().__init__(f"{where}, {field}: {problem}")
        self.dashboard = dashboard
        self.panel = panel
        self.field = field
        self.problem = problem


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Panel(_Model):
    """One chart: which view, which measure, grouped how, over which time."""

    id: str
    title: str = ""
    kind: PanelKind
    view: str
    measure: str
    group_by: tuple[str, ...] | None = None
    every: str | None = None
    x: str | None = None
    y: str | None = None
    where: dict[str, Scalar | list[Scalar]] = Field(default_factory=dict)
    range: str | None = None
    k: int | None = Field(default=None, ge=1, le=1000)

    @field_validator("id")
    @classmethod
    def _panel_id(cls, value: str) -> str:
        if NAME.fullmatch(value) is None:
            raise ValueError(f"panel id {value!r} must match {NAME.pattern}")
        return value

    @field_validator("range")
    @classmethod
    def _relative(cls, value: str | None) -> str | None:
        if value is not None and RANGE.fullmatch(value) is None:
            raise ValueError(f"range {value!r} must be a number and h, d or w, such as '7d'")
        return value

    def range_seconds(self) -> int | None:
        """The relative range in seconds (``None``: all time)."""
        if self.range is None:
            return None
        match = RANGE.fullmatch(self.range)
        assert match is not None
        return int(match.group(1)) * RANGE_SECONDS[match.group(2)]

    def query(self) -> tuple[str, dict[str, str]]:
        """The view query shape and its parameters (without the time range), as sent over HTTP."""
        params: dict[str, str] = {}
        kind = self.kind
        if kind in ("box", "box_sequence", "ellipse"):
            params["measure"] = self.measure
        if kind == "bar":
            params.update(by=self.measure, k=str(self.k or 10))
        if kind == "heatmap":
            params.update(column=self.measure, x=self.x or "", y=self.y or "")
        if self.group_by is not None and kind not in ("kpi", "heatmap"):
            params["group_by"] = ",".join(self.group_by)
        if kind in ("series", "box_sequence") and self.group_by is None:
            params["group_by"] = ""  # over time, by default one line or one box per bucket
        if kind == "box_sequence":
            params["per_bucket"] = "true"
        if kind in ("series", "box_sequence") and self.every:
            params["every"] = self.every
        return SHAPES[kind], params


class Dashboard(_Model):
    """A named page of panels, drawn in order."""

    name: str
    title: str = ""
    panels: tuple[Panel, ...] = ()

    @field_validator("name")
    @classmethod
    def _dashboard_name(cls, value: str) -> str:
        if NAME.fullmatch(value) is None:
            raise ValueError(f"dashboard name {value!r} must match {NAME.pattern}")
        return value

    def document(self) -> dict[str, Any]:
        """The ``[dashboards.NAME]`` table as written to ``facta.toml`` (defaults left out)."""
        table = self.model_dump(mode="json", exclude_defaults=True, exclude={"name"})
        table["panels"] = [
            p.model_dump(mode="json", exclude_defaults=True) for p in self.panels
        ]  # every panel keeps its required fields even when they equal a default
        return table


@dataclasses.dataclass(frozen=True, slots=True)
class ViewCatalog:
    """What a panel may ask of one view: dimensions, bucket width, measures, output columns."""

    name: str
    dimensions: tuple[str, ...]
    width: str | None
    timezone: str
    measures: dict[str, str]
    measure_fields: dict[str, tuple[str, ...]]
    columns: tuple[str, ...]

    @classmethod
    def of(cls, view: CompiledView) -> ViewCatalog:
        bucket = view.definition.bucket
        return cls(
            name=view.name,
            dimensions=view.definition.dimensions,
            width=None if bucket is None else bucket.width,
            timezone="UTC" if bucket is None else bucket.timezone,
            measures={m.name: m.kind for m in view.measures},
            measure_fields={m.name: tuple(m.fields) for m in view.measures},
            columns=tuple(view.output_types()),
        )

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check_panel(dashboard: str, panel: Panel, views: Mapping[str, ViewCatalog]) -> None:
    """Refuse a panel that its view cannot answer, naming dashboard, panel and field."""

    def fail(field: str, problem: str) -> DashboardError:
        return DashboardError(dashboard, panel.id, field, problem)

    view = views.get(panel.view)
    if view is None:
        raise fail("view", f"unknown view {panel.view!r} (views: {', '.join(views) or 'none'})")
    dims = view.dimensions
    kind = panel.kind
    if kind == "box" or kind == "box_sequence":
        if view.measures.get(panel.measure) != "quantiles":
            raise fail("measure", _wanted(view, panel.measure, ("quantiles",)))
    elif kind == "ellipse":
        if view.measures.get(panel.measure) not in ("covariance", "correlation"):
            raise fail("measure", _wanted(view, panel.measure, ("covariance", "correlation")))
    elif panel.measure not in view.columns:
        raise fail(
            "measure",
            f"view {view.name!r} has no output column {panel.measure!r} "
            f"(columns: {', '.join(view.columns)})",
        )
    for name in panel.group_by or ():
        if name not in dims:
            raise fail("group_by", _not_dimension(view, name))
    for name in panel.where:
        if name not in dims:
            raise fail("where", _not_dimension(view, name))
    if kind == "line" and len(panel.group_by or ()) != 1:
        raise fail("group_by", "a line chart needs exactly one dimension to draw along")
    if kind in ("series", "box_sequence") and len(panel.group_by or ()) > 1:
        raise fail("group_by", f"a {kind} panel draws at most one dimension (one line each)")
    if kind == "heatmap":
        for axis in ("x", "y"):
            value = getattr(panel, axis)
            if value is None:
                raise fail(axis, "a heat map needs x and y dimensions")
            if value not in dims:
                raise fail(axis, _not_dimension(view, value))
        if panel.x == panel.y:
            raise fail("y", f"x and y must differ, both are {panel.x!r}")
    elif panel.x is not None or panel.y is not None:
        raise fail("x" if panel.x is not None else "y", f"only heat maps take x and y, not {kind}")
    if panel.k is not None and kind != "bar":
        raise fail("k", f"only bar charts (top k) take k, not {kind}")
    timed = kind in ("series", "box_sequence") or panel.range is not None
    if timed and view.width is None:
        field = "range" if kind not in ("series", "box_sequence") else "kind"
        raise fail(field, f"view {view.name!r} has no event-time bucket")
    if panel.every is not None:
        if kind not in ("series", "box_sequence"):
            raise fail("every", f"only time series and box-plot sequences take every, not {kind}")
        if panel.every not in ("1h", "1d", "1w", "1mo") or not calendar.coarser_or_equal(
            panel.every, view.width or "1h"
        ):
            raise fail(
                "every",
                f"{panel.every!r} is not a multiple of view {view.name!r}'s bucket "
                f"width {view.width!r} (1h, 1d, 1w or 1mo)",
            )


def _not_dimension(view: ViewCatalog, name: str) -> str:
    known = ", ".join(view.dimensions) or "none"
    return f"{name!r} is not a dimension of view {view.name!r} (dimensions: {known})"


def _wanted(view: ViewCatalog, name: str, kinds: Sequence[str]) -> str:
    found = view.measures.get(name)
    if found is None:
        return f"view {view.name!r} has no measure {name!r} (measures: {', '.join(view.measures)})"
    return f"measure {name!r} is {found}, this panel needs {' or '.join(kinds)}"


def load_dashboard(name: str, table: Mapping[str, Any]) -> Dashboard:
    """Validate one ``[dashboards.NAME]`` table; errors name the dashboard, panel and field."""
    try:
        return Dashboard.model_validate({**table, "name": name})
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = list(first["loc"])
        panel = None
        if len(loc) >= 2 and loc[0] == "panels" and isinstance(loc[1], int):
            panels = table.get("panels") or []
            raw = panels[loc[1]] if loc[1] < len(panels) else {}
            panel = str(raw.get("id", f"#{loc[1] + 1}")) if isinstance(raw, Mapping) else None
            loc = loc[2:]
        field = ".".join(str(part) for part in loc) or "definition"
        raise DashboardError(name, panel, field, first["msg"]) from None


def load_dashboards(
    document: Mapping[str, Any], views: Mapping[str, ViewCatalog]
) -> list[Dashboard]:
    """Every ``[dashboards.*]`` table of a parsed project, validated against its views."""
    dashboards = []
    for name, table in (document.get("dashboards") or {}).items():
        if not isinstance(table, Mapping):
            raise DashboardError(name, None, "definition", "expected a table")
        dashboard = load_dashboard(name, table)
        seen: set[str] = set()
        for panel in dashboard.panels:
            if panel.id in seen:
                raise DashboardError(name, panel.id, "id", "used by two panels")
            seen.add(panel.id)
            check_panel(name, panel, views)
        dashboards.append(dashboard)
    return dashboards


def read_project(path: str | Path) -> dict[str, Any]:
    with open(path, "rb") as handle:
        return tomllib.load(handle)

"""Dashboards: panels over views, declared in ``facta.toml`` and saved back from the page."""

from facta.dashboards.applied import AppliedDashboards, apply_dashboards, plan_dashboards
from facta.dashboards.definition import (
    PANEL_KINDS,
    Dashboard,
    DashboardError,
    Panel,
    ViewCatalog,
    check_panel,
    load_dashboards,
)
from facta.dashboards.project_file import StaleProject, file_version, save_dashboard

__all__ = [
    "PANEL_KINDS",
    "AppliedDashboards",
    "Dashboard",
    "DashboardError",
    "Panel",
    "StaleProject",
    "ViewCatalog",
    "apply_dashboards",
    "check_panel",
    "file_version",
    "load_dashboards",
    "plan_dashboards",
    "save_dashboard",
]

"""The dashboard: its page at ``/``, its files under ``/static/``, and ``/dashboards``.

``GET /dashboards`` gives the applied dashboards, each panel with the view query it draws, the
built views (what a new panel may ask of them, their position and latest event time) and the
project file's version. ``PUT /dashboards/{name}`` (admin; with the session cookie also the CSRF
token) checks the dashboard against the project's views, writes it into the project file (see
:mod:`facta.dashboards.project_file`: comments kept, atomic, 409 if the file changed since the
page loaded it) and records it applied, so ``facta plan`` has nothing left to do.
"""

from __future__ import annotations

import threading
import tomllib
from pathlib import Path as FilePath
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Request
from fastapi.responses import FileResponse

from facta.dashboards.applied import AppliedDashboards
from facta.dashboards.catalog import built_views
from facta.dashboards.definition import (
    PANEL_KINDS,
    Dashboard,
    DashboardError,
    ViewCatalog,
    load_dashboard,
    load_dashboards,
    read_project,
)
from facta.dashboards.project_file import StaleProject, file_version, save_dashboard
from facta.server.auth import Access, requires
from facta.server.problems import ApiError
from facta.server.service_routes import STATIC_DIR, asset
from facta.server.state import server_state
from facta.views.compile import compile_view
from facta.views.definition import DefinitionError, load_views

router = APIRouter(tags=["dashboards"])

PAGE = STATIC_DIR / "dashboard" / "index.html"


@router.get("/", include_in_schema=False, dependencies=[requires(Access.PUBLIC)])
async def page() -> FileResponse:
    """The page holds no data: it asks ``/dashboards`` and the live routes once signed in."""
    return FileResponse(PAGE, media_type="text/html; charset=utf-8")


@router.get("/static/{name:path}", include_in_schema=False, dependencies=[requires(Access.PUBLIC)])
async def static_file(name: str) -> FileResponse:
    return await asset(name)


def project_path(request: Request) -> FilePath | None:
    """The project file ``facta serve --project`` was given, if any."""
    return server_state(request).views.project


def _log_path(request: Request) -> str:
    return server_state(request).log.path


@router.get(
    "/dashboards",
    summary="Dashboards with their panels' queries, the built views and the project version",
    dependencies=[requires(Access.READ)],
)
def list_dashboards(request: Request) -> dict[str, Any]:
    views = built_views(_log_path(request))
    with AppliedDashboards(_log_path(request)) as applied:
        dashboards = list(applied.all().values())
    project = project_path(request)
    version = file_version(project) if project is not None and project.is_file() else None
    return {
        "project": None if project is None else str(project),
        "version": version,
        "panel_kinds": list(PANEL_KINDS),
        "views": {name: view.to_json() for name, view in views.items()},
        "dashboards": [_described(d) for d in dashboards],
    }


@router.get(
    "/dashboards/clock",
    summary="Each built view's applied position and latest event time",
    dependencies=[requires(Access.READ)],
)
def clock(request: Request) -> dict[str, Any]:
    head = server_state(request).log.head_sync()
    views = built_views(_log_path(request))
    return {
        "head": head,
        "views": {
            name: {
                "position": v.position,
                "lag": max(head - v.position, 0),
                "latest_epoch": v.latest,
                "definition_hash": v.definition_hash,
            }
            for name, v in views.items()
        },
    }


def _described(dashboard: Dashboard) -> dict[str, Any]:
    panels = []
    for panel in dashboard.panels:
        shape, params = panel.query()
        panels.append(
            {
                **panel.model_dump(mode="json"),
                "shape": shape,
                "params": params,
                "range_seconds": panel.range_seconds(),
            }
        )
    return {"name": dashboard.name, "title": dashboard.title, "panels": panels}


_SAVING = threading.Lock()  # one save at a time: the version check and the write are one step
_EXAMPLE = {
    "title": "Operations",
    "panels": [{"id": "flights", "kind": "kpi", "view": "delays", "measure": "flights"}],
}


@router.put(
    "/dashboards/{name}",
    summary="Save a dashboard into the project file (409 if the file changed since loaded)",
    dependencies=[requires(Access.ADMIN)],
)
def save(
    request: Request,
    name: Annotated[
        str, Path(description="the dashboard", openapi_examples={"new": {"value": "fuzzed"}})
    ],
    dashboard: Annotated[
        dict[str, Any],
        Body(description="the [dashboards.NAME] table", examples=[_EXAMPLE]),
    ],
    version: Annotated[
        str | None,
        Body(
            description="the project version GET /dashboards gave; may be left out only to "
            "create a dashboard the file does not declare yet"
        ),
    ] = None,
) -> dict[str, Any]:
    project = project_path(request)
    if project is None or not project.is_file():
        raise ApiError(
            409,
            "no_project",
            "this server was started without a project file (facta serve --project FILE): "
            "there is nowhere to save a dashboard",
        )
    try:
        parsed = load_dashboard(name, dashboard)
        views = {v.name: ViewCatalog.of(compile_view(v)) for v in load_views(project)}
        load_dashboards({"dashboards": {name: parsed.document()}}, views)
    except DashboardError as exc:
        raise ApiError(400, "invalid_dashboard", str(exc), field=exc.field) from None
    except (DefinitionError, tomllib.TOMLDecodeError) as exc:
        raise ApiError(409, "invalid_project", f"{project}: {exc}") from None
    with _SAVING:
        if version is None:
            if name in (read_project(project).get("dashboards") or {}):
                raise ApiError(
                    409,
                    "version_required",
                    f"{project} already declares dashboard {name!r}: send the version "
                    "GET /dashboards gave, so nobody's edit is overwritten",
                )
            version = file_version(project)
        try:
            new_version = save_dashboard(project, parsed, version)
        except StaleProject as exc:
            raise ApiError(409, "project_changed", str(exc), found=exc.found) from None
        with AppliedDashboards(_log_path(request)) as applied:
            applied.record(parsed)
        # Re-read what was written, so the answer is what the file now declares.
        written = load_dashboard(name, read_project(project)["dashboards"][name])
    return {"version": new_version, "dashboard": _described(written)}

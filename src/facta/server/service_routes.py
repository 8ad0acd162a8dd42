"""Routes about the server itself: health, the OpenAPI document, its docs page and assets.

The docs page loads Swagger UI from ``/assets/swagger-ui/`` (vendored from the npm package
``swagger-ui-dist`` with its LICENSE and NOTICE), never from a CDN.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

from facta.server.auth import Access, requires
from facta.server.problems import ApiError
from facta.server.state import server_state

router = APIRouter(tags=["server"])

STATIC_DIR: Final = Path(__file__).parent / "static"
_MEDIA_TYPES: Final = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".html": "text/html; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    "": "text/plain; charset=utf-8",  # LICENSE, NOTICE
}


@router.get(
    "/health", summary="Is the server up (cheap: no disk)", dependencies=[requires(Access.PUBLIC)]
)
async def health(request: Request) -> dict[str, Any]:
    feed = server_state(request).feed
    return {"status": "ok" if feed.running else "degraded", "live_feed": feed.running}


@router.get("/openapi.json", include_in_schema=False, dependencies=[requires(Access.PUBLIC)])
async def openapi(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi())


@router.get("/docs", include_in_schema=False, dependencies=[requires(Access.PUBLIC)])
async def docs() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="facta API",
        swagger_js_url="/assets/swagger-ui/swagger-ui-bundle.js",
        swagger_css_url="/assets/swagger-ui/swagger-ui.css",
        swagger_favicon_url="/assets/swagger-ui/favicon-32x32.png",
    )


@router.get("/assets/{name:path}", include_in_schema=False, dependencies=[requires(Access.PUBLIC)])
async def asset(name: str) -> FileResponse:
    root = STATIC_DIR.resolve()
    path = (root / name).resolve()
    media_type = _MEDIA_TYPES.get(path.suffix)
    if not path.is_relative_to(root) or not path.is_file() or media_type is None:
        raise ApiError(404, "unknown_asset", f"no static file {name!r}", name=name)
    return FileResponse(path, media_type=media_type, headers={"Cache-Control": "max-age=3600"})

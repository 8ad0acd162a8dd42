"""The ASGI application of ``facta serve``: routers, guards, error bodies, the live feed.

Routers are one module per concern (``log_routes``, ``live_routes``, ``session_routes``,
``service_routes``); views and entities will add ``view_routes`` and ``command_routes`` the same
way, each route declaring its access with :func:`facta.server.auth.requires`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from facta.log.sqlite import SqliteLog
from facta.server import (
    command_routes,
    dashboard_routes,
    live_queries,
    live_routes,
    log_routes,
    service_routes,
    session_routes,
    view_routes,
)
from facta.server.config import ServerConfig
from facta.server.entity_host import EntityHost, Registered
from facta.server.guards import BodyLimit, HostAllowList
from facta.server.live import LogFeed
from facta.server.problems import document_problems, install_handlers
from facta.server.sessions import CSRF_HEADER, SessionStore
from facta.server.state import ServerState
from facta.server.tokens import TokenStore
from facta.server.view_service import ViewService

ROUTERS = (
    service_routes.router,
    session_routes.router,
    log_routes.router,
    live_routes.router,
    view_routes.router,
    command_routes.router,
    live_queries.router,
    dashboard_routes.router,
)


def create_app(
    log: SqliteLog,
    config: ServerConfig | None = None,
    tokens: TokenStore | None = None,
    *,
    project: Path | None = None,
    registered: Registered | None = None,
) -> FastAPI:
    """Build the HTTP API over ``log``. The caller owns the log and closes it.

    With ``project``, the server maintains the views the project declares (see
    :mod:`facta.server.maintainers`); without, it serves views maintained elsewhere. With
    ``registered`` (see :mod:`facta.server.entity_host`), it serves commands to those kinds of
    entities and runs those processors.
    """
    config = config or ServerConfig()
    views = ViewService(log.path, project)
    state = ServerState(
        log=log,
        config=config,
        tokens=tokens if tokens is not None else TokenStore(),
        sessions=SessionStore(config.session_ttl, config.max_sessions),
        feed=LogFeed(log, config.sse_queue),
        views=views,
        entities=EntityHost(log, registered) if registered is not None else None,
    )
    state.feed.listeners.append(views.wake)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await state.feed.start()
        await views.start()
        if state.entities is not None:
            await state.entities.start()
        try:
            yield
        finally:
            if state.entities is not None:
                await state.entities.stop()
            await state.live_views.stop()
            await views.stop()
            await state.feed.stop()

    app = FastAPI(
        title="facta",
        summary="An events-first data platform: the log is the truth.",
        version="0.1.0",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.state.facta = state
    for router in ROUTERS:
        app.include_router(router)
    install_handlers(app)
    documented = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_problems(documented())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    # Added last = outermost: the Host check runs first, then the body limit, then CORS.
    if config.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(config.cors_origins),
            allow_credentials=False,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["authorization", "content-type", "last-event-id", CSRF_HEADER],
        )
    app.add_middleware(BodyLimit, limit=config.max_body_bytes)
    app.add_middleware(HostAllowList, hosts=config.accepted_hosts)
    return app

"""Every route declares its access, and the server enforces it: 401 without a token, 403 with
the wrong scope, never either with the right one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastapi.routing
import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from facta.log import SqliteLog
from facta.server import Access, ServerConfig, create_app
from facta.server.auth import Guard
from tests.server.conftest import Tokens
from tests.server.server_process import RunningServer, facta_serve

EXPECTED: dict[tuple[str, str], Access] = {
    ("GET", "/health"): Access.PUBLIC,
    ("GET", "/openapi.json"): Access.PUBLIC,
    ("GET", "/docs"): Access.PUBLIC,
    ("GET", "/assets/{name:path}"): Access.PUBLIC,
    ("POST", "/auth/session"): Access.TOKEN,
    ("DELETE", "/auth/session"): Access.TOKEN,
    ("POST", "/log/streams/{stream}"): Access.APPEND,
    ("POST", "/log/appends"): Access.APPEND,
    ("GET", "/log/streams/{stream}"): Access.READ,
    ("GET", "/log/events"): Access.READ,
    ("GET", "/log/keys/{key:path}"): Access.READ,
    ("GET", "/log/stats"): Access.READ,
    ("GET", "/log/live"): Access.READ,
    ("GET", "/views"): Access.READ,
    ("GET", "/views/{name}/{shape}"): Access.READ,
    ("POST", "/sql"): Access.READ,
    ("GET", "/processors"): Access.READ,
    ("GET", "/"): Access.PUBLIC,
    ("GET", "/static/{name:path}"): Access.PUBLIC,
    ("GET", "/dashboards"): Access.READ,
    ("GET", "/dashboards/clock"): Access.READ,
    ("PUT", "/dashboards/{name}"): Access.ADMIN,
    ("GET", "/live/queries"): Access.READ,
    ("GET", "/live/views/{name}/{shape}"): Access.READ,
    ("POST", "/entities/{kind}/{entity_id}/commands"): Access.APPEND,
    ("GET", "/entities/{kind}/{entity_id}"): Access.READ,
}

SAMPLE_PATHS = {
    "{stream}": "scope-check",
    "{key:path}": "no-such-key",
    "{name:path}": "x.js",
    "{name}": "no-such-view",
    "{shape}": "kpi",
    "{kind}": "account",
    "{entity_id}": "a1",
}
APPEND_BODY = {"events": [{"type": "Checked"}]}
MULTI_BODY = {"streams": [{"stream": "scope-check", "events": [{"type": "Checked"}]}]}


def route_access(app: FastAPI) -> tuple[dict[tuple[str, str], Access], list[str]]:
    """Each route's declared access, and the problems: routes with no guard or several."""
    table: dict[tuple[str, str], Access] = {}
    problems: list[str] = []
    for path, methods, route in _routes(app):
        if not isinstance(route, APIRoute):
            problems.append(f"{route!r} is not an APIRoute, so it cannot declare its access")
            continue
        guards = [d.call for d in route.dependant.dependencies if isinstance(d.call, Guard)]
        if len(guards) != 1:
            problems.append(f"{sorted(methods)} {path} has {len(guards)} guards")
            continue
        for method in methods:
            table[(method, path)] = guards[0].access
    return table, problems


def _routes(app: FastAPI) -> Iterator[tuple[str, set[str], object]]:
    """(full path, methods, original route) of every route, routers included."""
    contexts = getattr(fastapi.routing, "iter_route_contexts", None)
    if contexts is None:  # FastAPI before lazily included routers: routes are flat
        for route in app.routes:
            yield getattr(route, "path", "?"), set(getattr(route, "methods", None) or ()), route
        return
    for context in contexts(app.routes):
        yield context.path or "?", set(context.methods or ()), context.original_route


@pytest.fixture
def app(tmp_path: Path) -> Iterator[FastAPI]:
    with SqliteLog(tmp_path / "facta.db") as log:
        yield create_app(log, ServerConfig())


def test_every_route_declares_exactly_the_expected_access(app: FastAPI) -> None:
    table, problems = route_access(app)
    assert problems == []
    assert table == EXPECTED


def test_a_route_added_without_access_is_caught(app: FastAPI) -> None:
    @app.get("/log/unguarded")
    async def unguarded() -> dict[str, str]:
        return {}

    table, problems = route_access(app)
    assert problems == ["['GET'] /log/unguarded has 0 guards"]
    assert ("GET", "/log/unguarded") not in table


def _request(
    client: httpx.Client, method: str, path: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    for placeholder, value in SAMPLE_PATHS.items():
        path = path.replace(placeholder, value)
    body: Any = None
    if (method, path) == ("POST", "/log/appends"):
        body = MULTI_BODY
    elif method == "POST" and path.startswith("/log/streams/"):
        body = APPEND_BODY
    elif method == "POST" and path.startswith("/entities/"):
        body = {"command": "Deposit", "data": {"amount": 1}}
    elif (method, path) == ("POST", "/sql"):
        body = {"sql": "SELECT 1 AS one"}
    with client.stream(method, path, json=body, headers=headers) as response:
        if "text/event-stream" not in response.headers.get("content-type", ""):
            response.read()
        return response


def _wrong_token(tokens: Tokens, access: Access) -> str:
    return tokens.writer if access is Access.READ else tokens.reader


def _right_token(tokens: Tokens, access: Access) -> str:
    return {Access.READ: tokens.reader, Access.APPEND: tokens.writer}.get(access, tokens.admin)


GUARDED = sorted((k, v) for k, v in EXPECTED.items() if v is not Access.PUBLIC)


@pytest.mark.parametrize(("route", "access"), GUARDED, ids=[f"{m} {p}" for (m, p), _ in GUARDED])
def test_auth_matrix(
    server: RunningServer, tokens: Tokens, route: tuple[str, str], access: Access
) -> None:
    method, path = route
    with server.client() as anonymous:
        refused = _request(anonymous, method, path)
        assert refused.status_code == 401
        assert refused.json()["error"] == "unauthorized"
        assert refused.headers["www-authenticate"] == "Bearer"
        forged = _request(anonymous, method, path, {"Authorization": "Bearer facta_0_nope"})
        assert forged.status_code == 401
        assert forged.json()["error"] == "invalid_token"
    if access.scope is not None:
        with server.client(_wrong_token(tokens, access)) as wrong:
            denied = _request(wrong, method, path)
            assert denied.status_code == 403
            assert denied.json()["error"] == "missing_scope"
            assert denied.json()["needed"] == access.scope.value
    for token in (_right_token(tokens, access), tokens.admin):
        with server.client(token) as right:
            allowed = _request(right, method, path)
            assert allowed.status_code not in (401, 403), allowed.text


def test_public_routes_need_no_token(server: RunningServer) -> None:
    with server.client() as anonymous:
        assert anonymous.get("/health").json()["status"] == "ok"
        assert anonymous.get("/openapi.json").json()["info"]["title"] == "facta"
        assert anonymous.get("/docs").status_code == 200


def test_open_read_lets_anonymous_read_but_never_write(tmp_path: Path, tokens: Tokens) -> None:
    with facta_serve(tmp_path, tokens.lines, ["--open-read"]) as server, server.client() as anon:
        assert anon.get("/log/events").status_code == 200
        refused = anon.post("/log/streams/open-read", json=APPEND_BODY)
        assert refused.status_code == 401
        assert refused.json()["error"] == "unauthorized"
        assert anon.post("/log/appends", json=MULTI_BODY).status_code == 401

"""Every route declares who may call it: ``requires(Access.READ)`` and friends.

A request proves who it is with ``Authorization: Bearer <token>`` or with the browser session
cookie (then a state-changing method also needs ``X-CSRF-Token``). No credentials: 401. Valid
credentials without the scope: 403. ``open_read`` lets anonymous requests use ``read`` routes;
nothing opens writing. ``tests/server/test_route_scopes.py`` lists every route with its access
and fails when a route is added without one.
"""

from __future__ import annotations

import enum
from typing import Any, Final

import anyio.to_thread
from fastapi import Depends, Request

from facta.server.problems import ApiError
from facta.server.sessions import CSRF_HEADER, SESSION_COOKIE
from facta.server.state import server_state
from facta.server.tokens import ANONYMOUS_READER, Principal, Scope

SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})


class Access(enum.StrEnum):
    """What a route requires of its caller."""

    PUBLIC = "public"
    """Anyone: health, the API docs and their static files. They reveal no data."""
    TOKEN = "token"
    """Any valid token, whatever its scopes (opening a browser session)."""
    READ = "read"
    APPEND = "append"
    ADMIN = "admin"

    @property
    def scope(self) -> Scope | None:
        return _SCOPES.get(self)


_SCOPES: Final = {Access.READ: Scope.READ, Access.APPEND: Scope.APPEND, Access.ADMIN: Scope.ADMIN}


class Guard:
    """The dependency that checks a route's access; ``access`` is read by the scope test."""

    def __init__(self, access: Access) -> None:
        self.access = access

    def __repr__(self) -> str:
        return f"Guard({self.access.value})"

    async def __call__(self, request: Request) -> Principal | None:
        if self.access is Access.PUBLIC:
            return None
        principal, via = await _identify(request)
        if principal is None:
            if self.access is Access.READ and server_state(request).config.open_read:
                principal, via = ANONYMOUS_READER, "open"
            else:
                raise ApiError(
                    401,
                    "unauthorized",
                    "this route needs a token: send 'Authorization: Bearer <token>' or open a "
                    "browser session with POST /auth/session",
                    headers={"WWW-Authenticate": "Bearer"},
                )
        scope = self.access.scope
        if scope is not None and not principal.allows(scope):
            raise ApiError(
                403,
                "missing_scope",
                f"token {principal.name!r} has scopes {sorted(s.value for s in principal.scopes)}"
                f"; this route needs {scope.value!r}",
                needed=scope.value,
            )
        request.state.principal = principal
        request.state.auth_via = via
        return principal


def requires(access: Access) -> Any:
    """``dependencies=[requires(Access.READ)]`` on a route, or a parameter default."""
    return Depends(Guard(access))


async def _identify(request: Request) -> tuple[Principal | None, str]:
    state = server_state(request)
    header = request.headers.get("authorization")
    if header is not None:
        kind, _, token = header.partition(" ")
        if kind.lower() != "bearer" or not token.strip():
            raise ApiError(
                401,
                "invalid_token",
                "Authorization header must be 'Bearer <token>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        token = token.strip()
        principal = state.tokens.cached(token)
        if principal is None:
            principal = await anyio.to_thread.run_sync(state.tokens.authenticate, token)
        if principal is None:
            raise ApiError(
                401,
                "invalid_token",
                "the bearer token is not one this server accepts",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return principal, "bearer"
    session_id = request.cookies.get(SESSION_COOKIE)
    if session_id is None:
        return None, "none"
    session = state.sessions.get(session_id)
    if session is None:
        raise ApiError(
            401, "session_expired", "the session cookie is unknown or expired: log in again"
        )
    if request.method not in SAFE_METHODS and not session.csrf_matches(
        request.headers.get(CSRF_HEADER)
    ):
        raise ApiError(
            403,
            "csrf_failed",
            f"a {request.method} with the session cookie needs the session's CSRF token in "
            "the X-CSRF-Token header",
        )
    return session.principal, "cookie"

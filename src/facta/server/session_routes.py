"""Browser sessions: exchange a bearer token for an HttpOnly cookie; log out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from facta.server.auth import Access, requires
from facta.server.problems import ApiError
from facta.server.sessions import CSRF_COOKIE, SESSION_COOKIE
from facta.server.state import server_state
from facta.server.tokens import Principal

router = APIRouter(prefix="/auth", tags=["auth"])


class SessionOut(BaseModel):
    name: str
    scopes: list[str]
    csrf_token: str
    expires_in: float


@router.post("/session", summary="Exchange a bearer token for a session cookie")
async def open_session(
    request: Request, response: Response, principal: Annotated[Principal, requires(Access.TOKEN)]
) -> SessionOut:
    state = server_state(request)
    if request.state.auth_via != "bearer":
        raise ApiError(
            400,
            "bearer_required",
            "a session is opened with 'Authorization: Bearer <token>', not with a cookie",
        )
    session_id, session = state.sessions.create(principal)
    ttl = int(state.config.session_ttl)
    secure = state.config.secure_cookies
    response.set_cookie(
        SESSION_COOKIE,
        session_id,
        max_age=ttl,
        path="/",
        httponly=True,
        samesite="strict",
        secure=secure,
    )
    response.set_cookie(
        CSRF_COOKIE, session.csrf, max_age=ttl, path="/", samesite="strict", secure=secure
    )
    return SessionOut(
        name=principal.name,
        scopes=sorted(s.value for s in principal.scopes),
        csrf_token=session.csrf,
        expires_in=state.config.session_ttl,
    )


@router.delete("/session", summary="End the browser session", dependencies=[requires(Access.TOKEN)])
async def close_session(request: Request, response: Response) -> dict[str, bool]:
    session_id = request.cookies.get(SESSION_COOKIE)
    if session_id is not None:
        server_state(request).sessions.end(session_id)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    response.delete_cookie(CSRF_COOKIE, path="/", samesite="strict")
    return {"ended": session_id is not None}

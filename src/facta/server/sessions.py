"""Browser sessions: a token exchanged for an HttpOnly cookie, plus a CSRF token.

EventSource cannot send an ``Authorization`` header, so the dashboard trades its token once for a
session cookie (``HttpOnly``: scripts cannot read it; ``SameSite=Strict``: other sites' pages do
not send it). State-changing requests made with the cookie must also carry the session's CSRF
token in ``X-CSRF-Token``; the page reads it from the non-HttpOnly ``facta_csrf`` cookie (double
submit) and the server compares it with the copy it keeps, in constant time.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

from facta.server.tokens import Principal

SESSION_COOKIE: Final = "facta_session"
CSRF_COOKIE: Final = "facta_csrf"
CSRF_HEADER: Final = "x-csrf-token"


@dataclass(frozen=True, slots=True)
class Session:
    principal: Principal
    csrf: str
    expires_at: float

    def csrf_matches(self, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(
            presented.encode("utf-8", "replace"), self.csrf.encode()
        )


class SessionStore:
    """Sessions in memory, bounded (the oldest is forgotten first) and expiring."""

    def __init__(self, ttl: float, limit: int) -> None:
        self.ttl = ttl
        self.limit = limit
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()

    def create(self, principal: Principal) -> tuple[str, Session]:
        session_id = secrets.token_urlsafe(32)
        session = Session(principal, secrets.token_urlsafe(32), time.monotonic() + self.ttl)
        with self._lock:
            self._sessions[session_id] = session
            while len(self._sessions) > self.limit:
                self._sessions.popitem(last=False)
        return session_id, session

    def get(self, session_id: str) -> Session | None:
        with self._lock:
            session = self._sessions.get(session_id)
            if session is not None and session.expires_at <= time.monotonic():
                del self._sessions[session_id]
                return None
            return session

    def end(self, session_id: str) -> None:
        with self._lock:
            self._sessions.pop(session_id, None)

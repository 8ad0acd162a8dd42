"""The browser flow: a token traded for an HttpOnly SameSite=Strict cookie, CSRF on writes."""

from __future__ import annotations

import uuid

import httpx

from tests.server.conftest import Tokens
from tests.server.server_process import RunningServer
from tests.server.sse_reader import sse_messages


def _cookie_client(server: RunningServer) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=10)


def _login(client: httpx.Client, token: str) -> dict[str, object]:
    answer = client.post("/auth/session", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.text
    body: dict[str, object] = answer.json()
    return body


def test_a_session_cookie_is_httponly_and_samesite_strict(
    server: RunningServer, tokens: Tokens
) -> None:
    with _cookie_client(server) as browser:
        answer = browser.post("/auth/session", headers={"Authorization": f"Bearer {tokens.admin}"})
        cookies = answer.headers.get_list("set-cookie")
        session = next(c for c in cookies if c.startswith("facta_session="))
        csrf = next(c for c in cookies if c.startswith("facta_csrf="))
        assert "HttpOnly" in session
        assert "SameSite=strict" in session or "SameSite=Strict" in session
        assert "HttpOnly" not in csrf  # the page reads it to send the header back
        assert answer.json()["csrf_token"] in csrf
        assert answer.json()["scopes"] == ["admin"]


def test_the_cookie_reads_and_follows_the_live_log(server: RunningServer, tokens: Tokens) -> None:
    with _cookie_client(server) as browser:
        _login(browser, tokens.reader)
        assert browser.get("/log/events", params={"limit": 1}).status_code == 200
        with browser.stream("GET", "/log/live") as live:
            assert live.status_code == 200
            assert next(sse_messages(live)).event in ("log", "progress")


def test_a_write_with_the_cookie_needs_the_csrf_header(
    server: RunningServer, tokens: Tokens
) -> None:
    stream = f"csrf-{uuid.uuid4().hex[:8]}"
    body = {"events": [{"type": "Clicked"}]}
    with _cookie_client(server) as browser:
        csrf = str(_login(browser, tokens.writer)["csrf_token"])
        forged = browser.post(f"/log/streams/{stream}", json=body)
        assert forged.status_code == 403
        assert forged.json()["error"] == "csrf_failed"
        wrong = browser.post(f"/log/streams/{stream}", json=body, headers={"X-CSRF-Token": "x"})
        assert wrong.status_code == 403
        assert wrong.json()["error"] == "csrf_failed"
        allowed = browser.post(f"/log/streams/{stream}", json=body, headers={"X-CSRF-Token": csrf})
        assert allowed.status_code == 200
        assert allowed.json()["streams"][0]["version"] == 1
        # the cookie carries the token's scopes, no more
        assert browser.get("/log/events").json()["error"] == "missing_scope"


def test_logging_out_ends_the_session(server: RunningServer, tokens: Tokens) -> None:
    with _cookie_client(server) as browser:
        csrf = str(_login(browser, tokens.reader)["csrf_token"])
        session = browser.cookies["facta_session"]
        assert browser.delete("/auth/session").json()["error"] == "csrf_failed"
        ended = browser.delete("/auth/session", headers={"X-CSRF-Token": csrf})
        assert ended.json() == {"ended": True}
    with httpx.Client(base_url=server.url, cookies={"facta_session": session}) as stale:
        refused = stale.get("/log/events")
        assert refused.status_code == 401
        assert refused.json()["error"] == "session_expired"


def test_a_session_is_opened_only_with_a_bearer_token(
    server: RunningServer, tokens: Tokens
) -> None:
    with _cookie_client(server) as browser:
        csrf = str(_login(browser, tokens.reader)["csrf_token"])
        again = browser.post("/auth/session", headers={"X-CSRF-Token": csrf})
        assert again.status_code == 400
        assert again.json()["error"] == "bearer_required"

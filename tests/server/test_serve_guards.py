"""The Host allow-list, the request body limit and CORS, against a real server."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx

from tests.server.conftest import MAX_BODY, Tokens
from tests.server.server_process import RunningServer


def test_a_foreign_host_header_is_refused(server: RunningServer) -> None:
    with server.client() as client:
        refused = client.get("/health", headers={"Host": "evil.example"})
        assert refused.status_code == 400
        assert refused.json()["error"] == "host_not_allowed"
        assert "evil.example" in refused.json()["detail"]
        rebound = client.get("/health", headers={"Host": f"evil.example:{server.port}"})
        assert rebound.status_code == 400
        for host in (f"127.0.0.1:{server.port}", f"localhost:{server.port}", "localhost"):
            assert client.get("/health", headers={"Host": host}).status_code == 200, host


def test_a_request_without_host_header_is_refused(server: RunningServer) -> None:
    # HTTP/1.0 allows leaving Host out; without it there is nothing to check against.
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
        raw.sendall(b"GET /health HTTP/1.0\r\n\r\n")
        answer = b""
        while chunk := raw.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.0 400") or answer.startswith(b"HTTP/1.1 400"), answer[:60]
    assert b'"host_not_allowed"' in answer


def _chunks(total: int, size: int = 8192) -> Iterator[bytes]:
    # A valid JSON document streamed without Content-Length (chunked transfer encoding).
    yield b'{"events": [{"type": "Big", "data": {"pad": "'
    sent = 0
    while sent < total:
        yield b"x" * size
        sent += size
    yield b'"}}]}'


def test_a_chunked_body_over_the_limit_gets_413(server: RunningServer, tokens: Tokens) -> None:
    with server.client(tokens.writer) as client:
        response = client.post(
            "/log/streams/big-chunked",
            content=_chunks(MAX_BODY + 16 * 1024),
            headers={"Content-Type": "application/json"},
        )
        assert "content-length" not in response.request.headers
        assert response.request.headers["transfer-encoding"] == "chunked"
        assert response.status_code == 413
        assert response.json()["error"] == "content_too_large"
        assert str(MAX_BODY) in response.json()["detail"]
    with server.client(tokens.admin) as admin:
        assert admin.get("/log/streams/big-chunked").json()["events"] == []


def test_a_declared_length_over_the_limit_gets_413(server: RunningServer, tokens: Tokens) -> None:
    body = b"".join(_chunks(MAX_BODY + 1024))
    with server.client(tokens.writer) as client:
        response = client.post(
            "/log/streams/big-declared",
            content=body,
            headers={"Content-Type": "application/json"},
        )
        assert response.request.headers["content-length"] == str(len(body))
        assert response.status_code == 413
        assert response.json()["error"] == "content_too_large"


def test_a_chunked_body_under_the_limit_is_appended(server: RunningServer, tokens: Tokens) -> None:
    with server.client(tokens.writer) as client:
        response = client.post(
            "/log/streams/small-chunked",
            content=_chunks(MAX_BODY // 2),
            headers={"Content-Type": "application/json"},
        )
        assert response.request.headers["transfer-encoding"] == "chunked"
        assert response.status_code == 200, response.text
        assert response.json()["streams"][0]["version"] >= 1


def test_cors_is_off_by_default(server: RunningServer, tokens: Tokens) -> None:
    origin = {"Origin": "http://elsewhere.example"}
    with httpx.Client(base_url=server.url, timeout=10) as client:
        preflight = client.options(
            "/log/streams/x",
            headers={**origin, "Access-Control-Request-Method": "POST"},
        )
        assert "access-control-allow-origin" not in preflight.headers
        simple = client.get("/health", headers=origin)
        assert simple.status_code == 200
        assert "access-control-allow-origin" not in simple.headers

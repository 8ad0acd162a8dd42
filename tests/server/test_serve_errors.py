"""Client errors are 4xx JSON bodies that name the problem; log errors map to their status."""

from __future__ import annotations

import uuid

import apsw

from tests.server.conftest import Tokens
from tests.server.server_process import RunningServer


def _stream() -> str:
    return f"err-{uuid.uuid4().hex[:12]}"


def test_wrong_expected_version_is_409_with_stream_expected_actual(
    server: RunningServer, tokens: Tokens
) -> None:
    stream = _stream()
    with server.client(tokens.writer) as client:
        first = client.post(f"/log/streams/{stream}", json={"events": [{"type": "A"}]})
        assert first.status_code == 200
        conflict = client.post(
            f"/log/streams/{stream}", json={"events": [{"type": "B"}], "expect": 0}
        )
        assert conflict.status_code == 409
        assert conflict.json() == {
            "error": "wrong_expected_version",
            "detail": f"stream {stream!r}: expected version 0, found version 1",
            "stream": stream,
            "expected": 0,
            "actual": 1,
        }
        named = client.post(
            f"/log/streams/{stream}", json={"events": [{"type": "B"}], "expect": "none"}
        )
        assert named.json()["expected"] == "none"


def test_a_reused_idempotency_key_is_409(server: RunningServer, tokens: Tokens) -> None:
    key = f"key-{uuid.uuid4().hex}"
    stream = _stream()
    with server.client(tokens.writer) as client:
        body = {"events": [{"type": "A", "data": {"n": 1}}], "key": key}
        assert client.post(f"/log/streams/{stream}", json=body).status_code == 200
        body["events"] = [{"type": "A", "data": {"n": 2}}]
        reused = client.post(f"/log/streams/{stream}", json=body)
        assert reused.status_code == 409
        assert reused.json()["error"] == "idempotency_key_reused"
        assert reused.json()["key"] == key


def test_invalid_input_names_the_problem(server: RunningServer, tokens: Tokens) -> None:
    with server.client(tokens.writer) as client:
        bad_name = client.post("/log/streams/-bad", json={"events": [{"type": "A"}]})
        assert bad_name.status_code == 422
        assert bad_name.json()["error"] == "invalid_input"
        assert "invalid stream name '-bad'" in bad_name.json()["detail"]
        bad_type = client.post(f"/log/streams/{_stream()}", json={"events": [{"type": "9x"}]})
        assert bad_type.status_code == 422
        assert "invalid event type '9x'" in bad_type.json()["detail"]
        outcome_without_key = client.post(
            f"/log/streams/{_stream()}", json={"events": [{"type": "A"}], "outcome": {"ok": 1}}
        )
        assert outcome_without_key.status_code == 422
        assert "outcome" in outcome_without_key.json()["detail"]


def test_malformed_requests_are_422_with_the_place(server: RunningServer, tokens: Tokens) -> None:
    with server.client(tokens.writer) as client:
        not_json = client.post(
            "/log/streams/x", content=b"{not json", headers={"Content-Type": "application/json"}
        )
        assert not_json.status_code == 422
        assert not_json.json()["error"] == "invalid_request"
        unknown_field = client.post("/log/streams/x", json={"events": [], "bogus": 1})
        assert unknown_field.status_code == 422
        assert unknown_field.json()["detail"].startswith("body.bogus:")
        bad_expect = client.post("/log/streams/x", json={"events": [], "expect": "sometimes"})
        assert bad_expect.status_code == 422
        assert any(p["where"].startswith("body.expect") for p in bad_expect.json()["problems"])
    with server.client(tokens.reader) as reader:
        bad_limit = reader.get("/log/events", params={"limit": 0})
        assert bad_limit.status_code == 422
        assert bad_limit.json()["detail"].startswith("query.limit:")


def test_unknown_things_are_404_json(server: RunningServer, tokens: Tokens) -> None:
    with server.client(tokens.reader) as client:
        route = client.get("/no/such/route")
        assert route.status_code == 404
        assert route.json()["error"] == "not_found"
        key = client.get("/log/keys/never-used")
        assert key.status_code == 404
        assert key.json() == {
            "error": "unknown_key",
            "detail": "idempotency key 'never-used' was never used",
            "key": "never-used",
        }
        method = client.put("/log/events")
        assert method.status_code == 405
        assert method.json()["error"] == "method_not_allowed"


def test_a_locked_log_is_503_with_retry_after(server: RunningServer, tokens: Tokens) -> None:
    # Another process's writer holds the SQLite write lock longer than the server's timeout.
    other = apsw.Connection(str(server.log_path))
    try:
        other.execute("BEGIN IMMEDIATE")
        with server.client(tokens.writer) as client:
            busy = client.post(f"/log/streams/{_stream()}", json={"events": [{"type": "A"}]})
        assert busy.status_code == 503
        assert busy.headers["retry-after"] == "1"
        assert busy.json()["error"] == "log_busy"
        assert "is locked by another writer; waited" in busy.json()["detail"]
        assert str(server.log_path) in busy.json()["detail"]
    finally:
        other.execute("ROLLBACK")
        other.close()
    with server.client(tokens.writer) as client:
        after = client.post(f"/log/streams/{_stream()}", json={"events": [{"type": "A"}]})
        assert after.status_code == 200

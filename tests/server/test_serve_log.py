"""The log over HTTP: appends with expectations and keys, reads, lookups, stats, docs."""

from __future__ import annotations

import uuid

from tests.server.conftest import Tokens
from tests.server.server_process import RunningServer


def _name(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex[:12]}"


def test_append_then_read_a_stream_forward_and_backward(
    server: RunningServer, tokens: Tokens
) -> None:
    stream = _name("acct")
    events = [{"type": "Deposited", "data": {"amount": n}} for n in range(1, 6)]
    with server.client(tokens.writer) as writer:
        result = writer.post(f"/log/streams/{stream}", json={"events": events, "expect": "none"})
    assert result.status_code == 200
    written = result.json()
    assert written["streams"][0] == {
        "stream": stream,
        "version": 5,
        "first_position": written["first_position"],
        "last_position": written["last_position"],
    }
    assert written["last_position"] - written["first_position"] == 4
    with server.client(tokens.reader) as reader:
        forward = reader.get(f"/log/streams/{stream}", params={"from_version": 2, "limit": 2})
        assert [e["data"]["amount"] for e in forward.json()["events"]] == [2, 3]
        assert [e["version"] for e in forward.json()["events"]] == [2, 3]
        backward = reader.get(f"/log/streams/{stream}", params={"direction": "backward"})
        assert [e["version"] for e in backward.json()["events"]] == [5, 4, 3, 2, 1]
        last_two = reader.get(
            f"/log/streams/{stream}", params={"direction": "backward", "limit": 2}
        )
        assert [e["version"] for e in last_two.json()["events"]] == [5, 4]
        first = forward.json()["events"][0]
        assert set(first) == {
            "position",
            "stream",
            "version",
            "type",
            "schema_version",
            "id",
            "recorded_at",
            "data",
            "metadata",
        }


def test_multi_stream_append_with_a_read_check_is_all_or_nothing(
    server: RunningServer, tokens: Tokens
) -> None:
    a, b, checked = _name("a"), _name("b"), _name("checked")
    with server.client(tokens.writer) as writer:
        writer.post(f"/log/streams/{checked}", json={"events": [{"type": "Opened"}]})
        ok = writer.post(
            "/log/appends",
            json={
                "streams": [
                    {"stream": a, "events": [{"type": "X"}], "expect": "none"},
                    {"stream": b, "events": [{"type": "Y"}, {"type": "Z"}]},
                    {"stream": checked, "expect": 1},
                ]
            },
        )
        assert ok.status_code == 200
        assert [s["version"] for s in ok.json()["streams"]] == [1, 2, 1]
        moved = writer.post(
            "/log/appends",
            json={
                "streams": [
                    {"stream": a, "events": [{"type": "X2"}]},
                    {"stream": checked, "expect": 0},
                ]
            },
        )
        assert moved.status_code == 409
        assert moved.json()["stream"] == checked
    with server.client(tokens.reader) as reader:
        assert len(reader.get(f"/log/streams/{a}").json()["events"]) == 1


def test_an_idempotency_key_replays_and_its_outcome_can_be_looked_up(
    server: RunningServer, tokens: Tokens
) -> None:
    key, stream = _name("cmd"), _name("acct")
    body = {"events": [{"type": "Opened"}], "key": key, "outcome": {"accepted": True}}
    with server.client(tokens.writer) as writer:
        first = writer.post(f"/log/streams/{stream}", json=body).json()
        again = writer.post(f"/log/streams/{stream}", json=body).json()
    assert first["replayed"] is False
    assert again["replayed"] is True
    assert again["first_position"] == first["first_position"]
    with server.client(tokens.reader) as reader:
        record = reader.get(f"/log/keys/{key}").json()
        assert record["key"] == key
        assert record["outcome"] == {"accepted": True}
        assert record["result"]["last_position"] == first["last_position"]
        assert reader.get(f"/log/streams/{stream}").json()["events"][0]["version"] == 1


def test_read_all_pages_and_filters(server: RunningServer, tokens: Tokens) -> None:
    prefix = _name("page")
    with server.client(tokens.writer) as writer:
        for n in range(6):
            kind = "Even" if n % 2 == 0 else "Odd"
            writer.post(f"/log/streams/{prefix}-{n}", json={"events": [{"type": kind}]})
        writer.post(f"/log/streams/{_name('other')}", json={"events": [{"type": "Even"}]})
    with server.client(tokens.reader) as reader:
        mine = reader.get("/log/events", params={"prefix": prefix}).json()["events"]
        assert [e["stream"] for e in mine] == [f"{prefix}-{n}" for n in range(6)]
        evens = reader.get("/log/events", params={"prefix": prefix, "type": "Even"}).json()
        assert [e["stream"][-1] for e in evens["events"]] == ["0", "2", "4"]
        both = reader.get(
            "/log/events", params=[("prefix", prefix), ("type", "Even"), ("type", "Odd")]
        )
        assert len(both.json()["events"]) == 6
        page = reader.get("/log/events", params={"prefix": prefix, "limit": 4}).json()
        assert len(page["events"]) == 4
        rest = reader.get(
            "/log/events", params={"prefix": prefix, "after": page["last_position"]}
        ).json()
        assert [e["position"] for e in page["events"] + rest["events"]] == [
            e["position"] for e in mine
        ]
        empty = reader.get("/log/events", params={"prefix": _name("none"), "after": 5})
        assert empty.json() == {"events": [], "last_position": 5}


def test_stats_and_health(server: RunningServer, tokens: Tokens) -> None:
    with server.client(tokens.reader) as reader:
        stats = reader.get("/log/stats").json()
        assert stats["log"]["durability"] == "strict"
        assert stats["log"]["events"] >= 0
        assert stats["server"]["live_position"] <= stats["log"]["events"]
        assert reader.get("/health").json() == {"status": "ok", "live_feed": True}


def test_the_docs_page_loads_only_local_assets(server: RunningServer) -> None:
    with server.client() as client:
        page = client.get("/docs").text
        for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
            assert f'"/assets/swagger-ui/{asset}"' in page
        assert "cdn" not in page.lower()
        assert "https://" not in page
        script = client.get("/assets/swagger-ui/swagger-ui-bundle.js")
        assert script.status_code == 200
        assert script.headers["content-type"].startswith("text/javascript")
        assert len(script.content) > 1_000_000
        assert "Apache License" in client.get("/assets/swagger-ui/LICENSE").text
        escape = client.get("/assets/..%2F..%2Fserver%2Fapp.py")
        assert escape.status_code == 404
        assert escape.json()["error"] == "unknown_asset"
        spec = client.get("/openapi.json").json()
        assert {"/log/streams/{stream}", "/log/appends", "/log/events", "/log/live"} <= set(
            spec["paths"]
        )

"""How a live query client coalesces pending changes (no server, no clock)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from facta.server.live_views import LiveClient, LiveMetrics


def _client() -> tuple[LiveClient, LiveMetrics]:
    metrics = LiveMetrics()
    query: Any = SimpleNamespace(hub=SimpleNamespace(metrics=metrics))
    return LiveClient(query), metrics


def test_pending_changes_merge_per_row_into_one_update() -> None:
    client, metrics = _client()
    client.merge(10, {("UA",): {"carrier": "UA", "n": 1}}, set())
    client.merge(
        11, {("UA",): {"carrier": "UA", "n": 2}, ("AA",): {"carrier": "AA", "n": 1}}, set()
    )
    client.merge(12, {}, {("AA",)})
    client.merge(13, {("B6",): {"carrier": "B6", "n": 5}}, {("DL",)})
    position, upserts, deletes = client.take()
    assert position == 13
    assert sorted(upserts, key=lambda r: r["carrier"]) == [
        {"carrier": "B6", "n": 5},
        {"carrier": "UA", "n": 2},
    ]
    assert sorted(deletes) == [["AA"], ["DL"]]
    assert metrics.coalesced == 3, "three merges landed on changes not yet sent"
    assert client.idle


def test_a_row_deleted_then_upserted_is_an_upsert_only() -> None:
    client, _ = _client()
    client.merge(5, {}, {("ZZ",)})
    client.merge(6, {("ZZ",): {"carrier": "ZZ", "n": 1}}, set())
    position, upserts, deletes = client.take()
    assert (position, upserts, deletes) == (6, [{"carrier": "ZZ", "n": 1}], [])


def test_a_reset_drops_what_was_pending() -> None:
    client, _ = _client()
    client.merge(5, {("UA",): {"carrier": "UA"}}, set())
    client.start_over("rebuilt")
    assert client.reset == "rebuilt" and client.position is None
    assert client.upserts == {} and client.deletes == set()

"""The same question asked twice of the same view state gets the same answer, sketches too."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from facta.log import NewEvent, SqliteLog
from facta.views import (
    ViewEngine,
    ViewStore,
    compile_view,
    load_definition,
    open_snapshot,
    shapes,
    views_path,
)
from tests.views.conftest import FAST

START = datetime(2013, 1, 1, tzinfo=UTC)
# k=8: every merge of two day cells compacts, and KLL keeps a random half when it compacts.
VIEW: dict[str, Any] = {
    "source": {"types": ["Flight"]},
    "dimensions": ["carrier"],
    "bucket": {"field": "time_hour", "width": "1d"},
    "fields": {"carrier": "string", "dep_delay": "double", "time_hour": "string"},
    "measures": {
        "flights": "count",
        "delay_q": {"kind": "quantiles", "field": "dep_delay", "k": 8},
    },
}


def _flights(rng: random.Random, day: int, count: int) -> list[NewEvent]:
    """``count`` flights on the ``day``-th of 28 days, a week apart (half a year: the answers
    merge several month and day cells)."""
    when = START + timedelta(days=7 * day)
    return [
        NewEvent(
            type="Flight",
            data={
                "carrier": rng.choice(["AA", "UA"]),
                "dep_delay": rng.gauss(10, 30),
                "time_hour": (when + timedelta(hours=rng.randrange(24))).isoformat(),
            },
        )
        for _ in range(count)
    ]


def test_a_query_repeated_on_the_same_state_gives_the_same_quantiles(tmp_path: Path) -> None:
    rng = random.Random(7)
    path = tmp_path / "log.db"
    view = compile_view(load_definition("delays", VIEW))
    store = ViewStore(views_path(path))
    with SqliteLog(path, FAST) as log:
        for day in range(28):
            log.append_sync(f"day-{day}", _flights(rng, day, 60))
        with ViewEngine(path, view, store).open() as engine:
            engine.run()
            first = shapes.groups(open_snapshot(store, "delays"), group_by=["carrier"], start=0)
            again = shapes.groups(open_snapshot(store, "delays"), group_by=["carrier"], start=0)
            # Each carrier's answer merges several month cells: without keeping the merge, the
            # quantiles of the two answers differ (each merge compacts at random).
            assert first.to_pylist() == again.to_pylist()
            box = shapes.box(open_snapshot(store, "delays"), "delay_q", group_by=["carrier"])
            assert (
                box.to_pylist()
                == shapes.box(
                    open_snapshot(store, "delays"), "delay_q", group_by=["carrier"], start=None
                ).to_pylist()
            )
            # A new event changes its carrier's cells: that answer is merged anew, and counts it.
            log.append_sync(
                "late",
                [
                    NewEvent(
                        type="Flight",
                        data={
                            "carrier": "AA",
                            "dep_delay": 5.0,
                            "time_hour": "2013-03-03T08:00:00Z",
                        },
                    )
                ],
            )
            engine.run()
            later = {
                r["carrier"]: r
                for r in shapes.groups(
                    open_snapshot(store, "delays"), group_by=["carrier"], start=0
                ).to_pylist()
            }
    before = {r["carrier"]: r for r in first.to_pylist()}
    assert later["AA"]["flights"] == before["AA"]["flights"] + 1
    assert later["UA"] == before["UA"]  # unchanged cells: the very same merge

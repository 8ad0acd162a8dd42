"""``as_of(position=P)``: exactly the state at checkpoint P, from the nearest history snapshot
plus replay — compared with a full rebuild up to P."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from facta.views import (
    EngineSettings,
    ViewEngine,
    ViewSnapshot,
    ViewStore,
    compile_view,
    load_definition,
    open_snapshot,
    shapes,
    views_path,
)
from facta.views.engine import state_at
from tests.views.conftest import flights_view

# KLL sketches are randomised once they compact: two builds agree on n, not on every quantile.
RANDOMISED = ("delay_q_p25", "delay_q_p50", "delay_q_p75")


def compiled(name: str) -> Any:
    table = {k: v for k, v in flights_view(name).items() if k != "name"}
    table["filter"] = "dep_delay IS NOT NULL OR carrier <> 'UA'"  # some events filtered out
    return compile_view(load_definition(name, table))


def same(a: pa.Table, b: pa.Table) -> None:
    assert a.schema.metadata[b"facta.position"] == b.schema.metadata[b"facta.position"]
    assert a.num_rows == b.num_rows > 0
    for left, right in zip(a.to_pylist(), b.to_pylist(), strict=True):
        for name, x in left.items():
            if name in RANDOMISED:
                continue
            y = right[name]
            if isinstance(x, float) and isinstance(y, float):
                assert math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9), (name, left, right)
            else:
                assert x == y, (name, left, right)


def views(snapshot: ViewSnapshot) -> list[pa.Table]:
    return [
        shapes.groups(snapshot, per_bucket=True),
        shapes.groups(snapshot),
        shapes.series(snapshot, group_by=["origin"], every="1mo"),
    ]


def test_as_of_position_is_the_state_a_full_rebuild_reaches(flights_log: Path) -> None:
    view = compiled("history")
    store = ViewStore(views_path(flights_log))
    settings = EngineSettings(batch_size=100, commit_every_events=250, history_every=700)
    with ViewEngine(flights_log, view, store, settings).open() as engine:
        engine.run(until=750)
        at_750 = {(c.level, c.dims, c.bucket): c for c in store.cells("history", 1, level=None)}
        engine.run()
    snapshots = store.snapshots("history", 1)
    # One snapshot at the first commit past each multiple of 700 (commits every 250-300 events).
    assert [s.checkpoint // 700 for s in snapshots] == [1, 2, 3, 4]
    assert snapshots[0].checkpoint == 750
    # The snapshot's cells come back byte for byte, though most were overwritten since.
    again = {(c.level, c.dims, c.bucket): c for c in store.state_at("history", 1, 750)}
    assert again == at_750
    assert sum(1 for c in store.cells("history", 1, level=None) if c.changed_at > 750) > 500
    live = open_snapshot(store, "history")
    second = snapshots[1]
    for position in (400, 750, 1234, second.checkpoint, second.checkpoint + 150, 2999, 3000):
        past = live.as_of(position=position)
        assert past.position == position
        rebuilt = open_snapshot(state_at(flights_log, view, position), "history")
        for mine, theirs in zip(views(past), views(rebuilt), strict=True):
            same(mine, theirs)
        assert past.info.rejected == rebuilt.info.rejected
    # From the second snapshot, one more batch (of up to 50,000 events) reaches 150 further.
    assert live.as_of(position=second.checkpoint + 150).info.batches == second.batches + 1
    assert second.batches > 1
    assert live.as_of(position=400).info.batches == 1  # no snapshot before: from the start
    with live.pinned():  # inside a read of the live view too
        assert shapes.kpi(live.as_of(position=1234)).schema.metadata[b"facta.position"] == b"1234"
    with pytest.raises(ValueError, match="from 0 to the view's checkpoint 3000"):
        live.as_of(position=3001)


def test_history_every_must_be_positive() -> None:
    with pytest.raises(ValueError, match="history_every must be >= 1, found 0"):
        EngineSettings(history_every=0)

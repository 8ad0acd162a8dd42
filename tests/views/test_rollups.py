"""Calendar roll-ups: reading whole day/week/month cells gives exactly what merging the bucket
cells below them gives, for any time range, ``every``, grouping and filter."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from facta.log import NewEvent, SqliteLog
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
from facta.views.measures import encode_cells
from facta.views.shapes import _rebucket
from tests.views.conftest import FAST

FIRST = datetime(2013, 2, 20, tzinfo=UTC)  # the events span a DST change in New York
DAYS = 100
EVERY = {"1h": [None, "1h", "1d", "1w", "1mo"], "1d": [None, "1d", "1w", "1mo"]}


def view_table(width: str) -> dict[str, Any]:
    return {
        "source": {"types": ["Flight"]},
        "fields": {
            "carrier": "string",
            "origin": "string",
            "dest": "string",
            "tailnum": "string",
            "dep_delay": "double",
            "arr_delay": "double",
            "distance": "bigint",
            "time_hour": "string",
        },
        "dimensions": ["carrier", "origin"],
        "bucket": {"field": "time_hour", "width": width, "timezone": "America/New_York"},
        "measures": {
            "flights": "count",
            "miles": "sum(distance)",
            "delay": "mean(dep_delay)",
            "delay_var": "variance(dep_delay)",
            "delay_min": "min(dep_delay)",
            "delay_max": "max(dep_delay)",
            "delay_cov": "covariance(dep_delay, arr_delay)",
            # k above the event count: the sketch holds every value, so it is exact either way.
            "delay_q": {"kind": "quantiles", "field": "dep_delay", "k": 4096},
            "dests": "top_k(dest, k=4)",
            "planes": "distinct(tailnum)",
            "last_plane": "latest(tailnum)",
        },
    }


def events(count: int) -> list[NewEvent]:
    """Flights at random times over 100 days, appended in shuffled time order (late events)."""
    rng = random.Random(4)
    found = []
    for _ in range(count):
        moment = FIRST + timedelta(seconds=rng.randrange(DAYS * 86400))
        delay = None if rng.random() < 0.1 else float(rng.randint(-20, 200))
        data = {
            "carrier": rng.choice(["AA", "UA", "B6"]),
            "origin": rng.choice(["JFK", "EWR"]),
            "dest": rng.choice(["LAX", "SFO", "ORD", "ATL", "MIA", "BOS", "DEN"]),
            "tailnum": f"N{rng.randrange(15)}",
            "dep_delay": delay,
            "arr_delay": None if delay is None else delay + rng.randint(-30, 30),
            "distance": rng.randint(100, 3000),
            "time_hour": moment.isoformat().replace("+00:00", "Z"),
        }
        found.append(NewEvent(type="Flight", data=data))
    return found


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ViewSnapshot]]:
    path = tmp_path_factory.mktemp("rollups") / "log.db"
    with SqliteLog(path, FAST) as log:
        batch = events(2500)
        for start in range(0, len(batch), 50):
            log.append_sync(f"s{start}", batch[start : start + 50])
    store = ViewStore(views_path(path))
    snapshots = {}
    for width in ("1h", "1d"):
        name = f"rolled_{width}"
        view = compile_view(load_definition(name, view_table(width)))
        # Small batches and commits, reopened between segments: roll-ups are kept up many
        # times as late events land in buckets already rolled up, and reloaded after restarts.
        # The middle segment's pages count as large: its roll-ups are merged anew from their
        # buckets at each commit, the other segments' pages fold into them directly.
        for until, direct_up_to in ((300, 1000), (1100, 50), (2500, 1000)):
            settings = EngineSettings(
                batch_size=97, commit_every_events=200, fold_rollups_events=direct_up_to
            )
            with ViewEngine(path, view, store, settings).open() as engine:
                engine.run(until=until)
        snapshots[width] = open_snapshot(store, name)
    yield snapshots


def same_rows(a: pa.Table, b: pa.Table) -> None:
    assert a.column_names == b.column_names
    assert a.num_rows == b.num_rows
    for left, right in zip(a.to_pylist(), b.to_pylist(), strict=True):
        for name, x in left.items():
            y = right[name]
            if isinstance(x, float) and isinstance(y, float):
                assert math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9), (name, left, right)
            else:
                assert x == y, (name, left, right)


def both_paths(
    snapshot: ViewSnapshot,
    start: int | None,
    end: int | None,
    every: str | None,
    group_by: tuple[str, ...],
    where: dict[str, Any] | None,
) -> tuple[pa.Table, pa.Table]:
    bucket = snapshot.view.definition.bucket
    assert bucket is not None
    query: dict[str, Any] = {"where": where, "start": start, "end": end, "group_by": group_by}
    if every is None:  # one row per group over the range
        fast = snapshot.merge(**query)
        slow = snapshot.merge(**query, rollups=False)
        return snapshot.table(fast, group_by), snapshot.table(slow, group_by)
    fast = _rebucket(snapshot, snapshot.merge(**query, by_bucket=True, every=every), every)
    slow = _rebucket(snapshot, snapshot.merge(**query, by_bucket=True, rollups=False), every)
    rows = sorted(slow, key=str)
    assert sorted(fast, key=str) == rows
    return (
        snapshot.table(fast, group_by, bucket=True, rows=rows),
        snapshot.table(slow, group_by, bucket=True, rows=rows),
    )


moments = st.one_of(
    st.none(),
    st.integers(
        int((FIRST - timedelta(days=5)).timestamp()),
        int((FIRST + timedelta(days=DAYS + 5)).timestamp()),
    ),
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    width=st.sampled_from(["1h", "1d"]),
    start=moments,
    end=moments,
    every_index=st.integers(0, 4),
    group_by=st.sampled_from([(), ("carrier",), ("carrier", "origin"), ("origin",)]),
    where=st.sampled_from([None, {"origin": "JFK"}, {"carrier": ["UA", "B6"]}]),
    as_of=moments,
)
def test_rollups_give_the_merge_of_their_buckets(
    built: dict[str, ViewSnapshot],
    width: str,
    start: int | None,
    end: int | None,
    every_index: int,
    group_by: tuple[str, ...],
    where: dict[str, Any] | None,
    as_of: int | None,
) -> None:
    choices = EVERY[width]
    every = choices[every_index % len(choices)]
    snapshot = built[width]
    if as_of is not None:
        snapshot = snapshot.as_of(event_time=as_of)
    fast, slow = both_paths(snapshot, start, end, every, group_by, where)
    same_rows(fast, slow)


def test_long_ranges_read_roll_up_cells_not_buckets(built: dict[str, ViewSnapshot]) -> None:
    hourly = built["1h"]
    start = int(datetime(2013, 3, 1, 5, tzinfo=UTC).timestamp())  # local midnight, March 1
    end = int(datetime(2013, 5, 17, 13, tzinfo=UTC).timestamp())
    plan = hourly.plan(start, end)
    assert [level for level, _, _ in plan] == ["1mo", "1d", ""]  # March, April; days; hours
    read = sum(len(hourly._cached().level(lv).select({}, lo, hi)) for lv, lo, hi in plan)
    buckets = len(hourly._cached().level("").select({}, start, end))
    assert buckets > 10 * read  # hundreds of hour cells became a few dozen roll-up cells
    weekly = hourly.plan(start, end, by_bucket=True, every="1w")
    assert {level for level, _, _ in weekly} == {"1w", "1d", ""}
    # The public shape reads them too, with every bucket present.
    series = shapes.series(hourly, start=start, end=end, every="1w", where={"origin": "JFK"})
    _, slow = both_paths(hourly, start, end, "1w", (), {"origin": "JFK"})
    buckets, flights = slow.column("bucket").to_pylist(), slow.column("flights").to_pylist()
    counts = dict(zip(buckets, flights, strict=True))
    assert sum(counts.values()) == sum(series.column("flights").to_pylist()) > 100
    for moment, flights in zip(
        series.column("bucket").to_pylist(), series.column("flights").to_pylist(), strict=True
    ):
        assert counts.get(moment, 0) == flights


@pytest.mark.parametrize("width", ["1h", "1d"])
def test_roll_ups_of_a_live_view_with_late_events_give_the_merge_of_their_buckets(
    tmp_path: Any, width: str
) -> None:
    """A live view sees events mostly in time order, committed every few dozen: each week and
    month is folded into by many batches, and some events arrive days late, into weeks and
    months already written. The roll-ups still read exactly as the merge of the buckets."""
    path = tmp_path / "log.db"
    ordered = sorted(events(1200), key=lambda e: str(e.data["time_hour"]))
    rng = random.Random(7)
    for index in range(0, len(ordered) - 200, 10):  # one event in ten lands 50-200 events late
        ordered.insert(index + rng.randint(50, 200), ordered.pop(index))
    with SqliteLog(path, FAST) as log:
        for start in range(0, len(ordered), 50):
            log.append_sync(f"s{start}", ordered[start : start + 50])
    store = ViewStore(views_path(path))
    name = f"live_{width}"
    view = compile_view(load_definition(name, view_table(width)))
    settings = EngineSettings(batch_size=40, commit_every_events=40)
    with ViewEngine(path, view, store, settings).open() as engine:
        engine.run()
        assert engine.batches >= 30
    snapshot = open_snapshot(store, name)
    for every in EVERY[width]:
        for group_by in [(), ("carrier",), ("carrier", "origin")]:
            fast, slow = both_paths(snapshot, None, None, every, group_by, None)
            assert fast.num_rows > 0
            same_rows(fast, slow)
    store.close()


def test_a_live_commit_stores_each_cell_of_every_level_as_it_is_in_memory(tmp_path: Any) -> None:
    """A commit serialises the bucket, all-time and roll-up cells it changed in one pass: every
    stored row (level, dims, bucket) holds the very bytes and position of that cell's states,
    not a neighbour's (the pass puts the levels' cells side by side)."""
    path = tmp_path / "log.db"
    with SqliteLog(path, FAST) as log:
        for start, event in enumerate(events(400)):
            log.append_sync(f"s{start % 7}", [event])
    store = ViewStore(views_path(path))
    view = compile_view(load_definition("live", view_table("1h")))
    settings = EngineSettings(batch_size=40, commit_every_events=40)
    with ViewEngine(path, view, store, settings).open() as engine:
        engine.run()
        assert engine.batches == 10
        expected = {("", dims, bucket): cell for (dims, bucket), cell in engine.cells.items()}
        for level, cells in engine._rollups.cells.items():
            expected.update({(level, d, b): cell for (d, b), cell in cells.items()})
        stored = list(store.cells("live", engine.generation, level=None))
        assert {s.level for s in stored} == {"", "1d", "1w", "1mo"}
        assert len(stored) == len(expected) > 100
        keys = list(expected)
        raws = encode_cells(view.measures, [expected[key].states for key in keys])
        by_key = dict(zip(keys, raws, strict=True))
        for row in stored:
            key = (row.level, row.dims, row.bucket)
            assert row.state == by_key[key], key
            assert row.changed_at == expected[key].changed_at, key
    store.close()

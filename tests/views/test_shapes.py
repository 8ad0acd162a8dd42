"""Query shapes: KPI, groups, series, top-k, box plots, heat maps, ellipses — with filters."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from facta.log import NewEvent, SqliteLog
from facta.views import (
    EngineSettings,
    ViewEngine,
    ViewSnapshot,
    ViewStore,
    ViewTimeout,
    calendar,
    compile_view,
    load_definition,
    open_snapshot,
    shapes,
    views_path,
)
from tests.views.conftest import FAST, flights_view


def built(log_path: Path, name: str = "shape", **changes: Any) -> ViewSnapshot:
    table = {k: v for k, v in flights_view(name, **changes).items() if k != "name"}
    view = compile_view(load_definition(name, table))
    store = ViewStore(views_path(log_path))
    with ViewEngine(log_path, view, store).open() as engine:
        engine.run()
    return open_snapshot(store, name)


def test_kpi_and_groups_merge_finer_cells(
    flights_log: Path, small_flights: list[dict[str, Any]]
) -> None:
    snapshot = built(flights_log)
    kpi = shapes.kpi(snapshot).to_pylist()[0]
    delays = [r["dep_delay"] for r in small_flights if r["dep_delay"] is not None]
    assert kpi["flights"] == len(small_flights)
    assert kpi["delay_n"] == len(delays)
    assert math.isclose(kpi["delay"], float(np.mean(delays)), rel_tol=1e-12)
    assert math.isclose(kpi["delay_var"], float(np.var(delays, ddof=1)), rel_tol=1e-9)
    by_carrier = shapes.groups(snapshot, group_by=["carrier"]).to_pylist()
    expected: dict[str, int] = {}
    for row in small_flights:
        expected[row["carrier"]] = expected.get(row["carrier"], 0) + 1
    assert {r["carrier"]: r["flights"] for r in by_carrier} == expected
    jfk_ua = shapes.kpi(snapshot, where={"origin": "JFK", "carrier": ["UA", "B6"]}).to_pylist()[0]
    wanted = [r for r in small_flights if r["origin"] == "JFK" and r["carrier"] in ("UA", "B6")]
    assert jfk_ua["flights"] == len(wanted)
    metadata = shapes.kpi(snapshot).schema.metadata
    assert metadata[b"facta.definition_hash"] == snapshot.definition_hash.encode()
    assert int(metadata[b"facta.position"]) == 3000 or int(metadata[b"facta.position"]) > 0


def test_time_series_has_every_bucket_with_calendar_days_across_dst(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    with SqliteLog(path, FAST) as log:
        for stamp, delay in (
            ("2013-03-09T15:00:00Z", 1.0),
            ("2013-03-12T15:00:00Z", 2.0),
            ("2013-11-02T15:00:00Z", 3.0),
            ("2013-11-04T15:00:00Z", 4.0),
        ):
            data = {"carrier": "AA", "origin": "JFK", "dep_delay": delay, "time_hour": stamp}
            log.append_sync("s", [NewEvent(type="FlightDeparted", data=data)])
    snapshot = built(path, "dst")
    start = datetime(2013, 3, 9, 5, tzinfo=UTC)  # local midnight, EST
    end = datetime(2013, 3, 13, 4, tzinfo=UTC)  # local midnight, EDT
    march = shapes.series(snapshot, start=start, end=end).to_pydict()
    starts = [int(b.timestamp()) for b in march["bucket"]]
    assert np.diff(starts).tolist() == [86400, 82800, 86400]  # March 10 has 23 hours
    assert march["flights"] == [1, 0, 0, 1]
    assert march["delay"] == [1.0, None, None, 2.0]
    november = shapes.series(
        snapshot,
        start=datetime(2013, 11, 2, 4, tzinfo=UTC),
        end=datetime(2013, 11, 5, 5, tzinfo=UTC),
    ).to_pydict()
    assert np.diff([int(b.timestamp()) for b in november["bucket"]]).tolist() == [86400, 90000]
    weekly = shapes.series(snapshot, every="1w").to_pydict()
    mondays = [
        b.astimezone(__import__("zoneinfo").ZoneInfo("America/New_York")) for b in weekly["bucket"]
    ]
    assert all(m.weekday() == 0 and m.hour == 0 for m in mondays)
    assert sum(weekly["flights"]) == 4 and len(weekly["flights"]) == 36
    with pytest.raises(ValueError, match="not a multiple"):
        shapes.series(snapshot, every="1h")


def test_top_heatmap_box_and_ellipse(
    flights_log: Path, small_flights: list[dict[str, Any]]
) -> None:
    snapshot = built(flights_log)
    top = shapes.top(snapshot, "flights", 3, group_by=["carrier"]).to_pylist()
    counts: dict[str, int] = {}
    for row in small_flights:
        counts[row["carrier"]] = counts.get(row["carrier"], 0) + 1
    assert [r["flights"] for r in top] == sorted(counts.values(), reverse=True)[:3]
    busiest = shapes.top(snapshot, "flights", 3, per_bucket=True).to_pylist()
    every_cell = sorted(shapes.groups(snapshot, per_bucket=True).column("flights").to_pylist())
    assert [r["flights"] for r in busiest] == every_cell[::-1][:3]
    assert all(r["bucket"] is not None and r["delay_q_n"] is not None for r in busiest)
    heat = shapes.heatmap(snapshot, "flights", "carrier", "origin")
    assert heat.column_names == ["carrier", "origin", "flights"]
    assert sum(heat.column("flights").to_pylist()) == 3000
    boxes = shapes.box(snapshot, "delay_q", group_by=["origin"]).to_pylist()
    assert [b["origin"] for b in boxes] == ["EWR", "JFK", "LGA"]
    for b in boxes:
        delays = sorted(
            r["dep_delay"]
            for r in small_flights
            if r["origin"] == b["origin"] and r["dep_delay"] is not None
        )
        assert b["n"] == len(delays) and b["min"] == delays[0] and b["max"] == delays[-1]
        assert b["whisker_low"] <= b["q1"] <= b["median"] <= b["q3"] <= b["whisker_high"]
        assert b["whisker_high"] <= b["q3"] + 1.5 * (b["q3"] - b["q1"])
        above = sum(1 for d in delays if d > b["whisker_high"])
        assert abs(b["beyond_high"] - above) <= 0.02 * len(delays)
    sequence = shapes.box(snapshot, "delay_q", group_by=[], per_bucket=True, every="1mo")
    assert (
        sequence.num_rows == 12
        and sum(sequence.column("n").to_pylist()) == boxes[0]["n"] + boxes[1]["n"] + boxes[2]["n"]
    )
    [ell] = shapes.ellipse(snapshot, "delay_cov", group_by=[]).to_pylist()
    pairs = np.array(
        [
            (r["dep_delay"], r["arr_delay"])
            for r in small_flights
            if r["dep_delay"] is not None and r["arr_delay"] is not None
        ]
    )
    cov = np.cov(pairs.T)
    assert ell["n"] == len(pairs)
    assert math.isclose(ell["mean_x"], pairs[:, 0].mean(), rel_tol=1e-9)
    assert math.isclose(ell["cov_xy"], cov[0, 1], rel_tol=1e-9)
    values = np.linalg.eigvalsh(cov)
    assert math.isclose(ell["r1_major"], math.sqrt(values[1]), rel_tol=1e-9)
    assert math.isclose(ell["r2_minor"], 2 * math.sqrt(values[0]), rel_tol=1e-9)
    with pytest.raises(ValueError, match="is count, this query needs quantiles"):
        shapes.box(snapshot, "flights")


def test_min_position_waits_then_times_out(flights_log: Path) -> None:
    snapshot = built(flights_log, "waiting", measures={"n": "count"})
    with pytest.raises(ViewTimeout, match="not 999999"):
        open_snapshot(snapshot.store, "waiting", min_position=999_999, timeout=0.05)
    assert open_snapshot(snapshot.store, "waiting", min_position=snapshot.position).position >= 1


def test_a_view_without_dimensions_or_bucket_is_one_cell(
    flights_log: Path, small_flights: list[dict[str, Any]]
) -> None:
    snapshot = built(
        flights_log,
        "whole_log",
        dimensions=[],
        bucket=None,
        measures={"events": "count", "streams": "distinct(_stream)", "last": "latest(_stream)"},
    )
    [row] = shapes.kpi(snapshot).to_pylist()
    assert row["events"] == len(small_flights)
    assert (
        row["streams_lower"]
        <= len(
            {r["carrier"] + str(r["flight"]) + str((r["month"], r["day"])) for r in small_flights}
        )
        <= row["streams_upper"]
    )
    assert row["last"].startswith("flight-")
    [change] = shapes.changes(snapshot, 0).to_pylist()
    assert change["events"] == len(small_flights) and "bucket" not in change
    assert shapes.changes(snapshot, snapshot.position).num_rows == 0


def test_all_time_rollups_equal_the_merge_of_their_buckets(flights_log: Path) -> None:
    snapshot = built(flights_log, "rolled")
    exact = ["carrier", "flights", "delay_sum", "miles", "delay_min", "delay_max", "last_plane"]
    rolled = shapes.groups(snapshot, group_by=["carrier"])  # reads the roll-up cells
    merged = shapes.groups(snapshot, group_by=["carrier"], start=0)  # merges daily cells
    assert rolled.select(exact).to_pylist() == merged.select(exact).to_pylist()
    for a, b in zip(
        rolled.column("delay_var").to_pylist(), merged.column("delay_var").to_pylist(), strict=True
    ):
        assert (a is None and b is None) or abs(a - b) <= 1e-9 * abs(a)
    cells, _ = snapshot.store.size("rolled", snapshot.info.generation)
    days = shapes.groups(snapshot, per_bucket=True).to_pylist()
    weeks = {(r["carrier"], r["origin"], floor(r["bucket"], "1w")) for r in days}
    months = {(r["carrier"], r["origin"], floor(r["bucket"], "1mo")) for r in days}
    groups = shapes.groups(snapshot).num_rows
    assert cells == len(days) + groups + len(weeks) + len(months)  # days, all time, roll-ups


def floor(moment: datetime, width: str) -> int:
    return calendar.floor(int(moment.timestamp()), width, "America/New_York")


def test_top_per_bucket_by_count_equals_the_merged_ranking(flights_log: Path) -> None:
    """top by a count per (group, bucket) ranks stored cells without merging every one of them;
    its rows must be exactly the first k of every merged cell sorted by that count (ties kept
    in cell order), with a where filter and a time range too."""
    snapshot = built(flights_log)
    cases: list[dict[str, Any]] = [
        {},
        {"where": {"origin": "JFK"}},
        {"start": datetime(2013, 1, 5, tzinfo=UTC), "end": datetime(2013, 1, 20, tzinfo=UTC)},
    ]
    for case in cases:
        fast = shapes.top(snapshot, "flights", 10, per_bucket=True, **case).to_pylist()
        every = shapes.groups(snapshot, per_bucket=True, **case).to_pylist()
        expected = sorted(every, key=lambda row: row["flights"], reverse=True)[:10]
        assert len(every) > 10, case  # the ranking had more cells to choose from than k
        assert fast == expected, case
        ascending = shapes.top(snapshot, "flights", 5, per_bucket=True, ascending=True, **case)
        assert ascending.to_pylist() == sorted(every, key=lambda row: row["flights"])[:5], case


def test_top_stays_right_as_a_live_view_changes(flights_log: Path) -> None:
    """The reader keeps each measure's sorted order between queries and moves only the cells a
    new checkpoint changed (or sorts again after many changes): the ranking must always be the
    one a full sort of every merged cell gives."""
    table = {k: v for k, v in flights_view("live_top").items() if k != "name"}
    view = compile_view(load_definition("live_top", table))
    store = ViewStore(views_path(flights_log))
    with ViewEngine(flights_log, view, store, EngineSettings(batch_size=7)).open() as engine:
        for until in (1500, 1503, 1530, 3000):  # a few changed cells, then many
            engine.run(until=until)
            snapshot = open_snapshot(store, "live_top")
            for by, ascending in (("flights", False), ("delay", True), ("delay", False)):
                fast = shapes.top(snapshot, by, 7, per_bucket=True, ascending=ascending)
                every = shapes.groups(snapshot, per_bucket=True).to_pylist()
                present = [r for r in every if r[by] is not None]
                expected = sorted(present, key=lambda r: r[by], reverse=not ascending)[:7]
                assert fast.to_pylist() == expected, (until, by, ascending)
                whole = shapes.top(snapshot, by, 3, ascending=ascending).to_pylist()
                groups = [r for r in shapes.groups(snapshot).to_pylist() if r[by] is not None]
                ranked = sorted(groups, key=lambda r: r[by], reverse=not ascending)[:3]
                assert whole == ranked, (until, by, ascending)
    levels = store.cache["live_top"].levels
    assert levels[""].finalized(0, view.measures[0]).orders  # the kept order was reused

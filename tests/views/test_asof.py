"""As-of queries: the state at a past position, buckets complete by an event time, and
point-in-time features over a spine."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa

from facta.views import (
    ViewEngine,
    ViewStore,
    compile_view,
    load_definition,
    open_snapshot,
    views_path,
)
from facta.views.engine import state_at
from facta.views.shapes import groups, kpi, point_in_time
from tests.views.conftest import flights_view

NEW_YORK = ZoneInfo("America/New_York")


def compiled(name: str) -> Any:
    table = {k: v for k, v in flights_view(name).items() if k != "name"}
    return compile_view(load_definition(name, table))


def test_state_at_a_position_is_the_state_the_view_had_there(flights_log: Path) -> None:
    view = compiled("past")
    store = ViewStore(views_path(flights_log))
    with ViewEngine(flights_log, view, store).open() as engine:
        engine.run(until=1234)
        then = groups(open_snapshot(store, "past")).to_pylist()
        engine.run()
    replayed = state_at(flights_log, view, 1234)
    again = groups(open_snapshot(replayed, "past"))
    assert again.schema.metadata[b"facta.position"] == b"1234"
    assert again.to_pylist() == then
    assert kpi(open_snapshot(store, "past")).column("flights").to_pylist() == [3000]


def test_as_of_event_time_keeps_only_complete_buckets(
    flights_log: Path, small_flights: list[dict[str, Any]]
) -> None:
    view = compiled("closed")
    store = ViewStore(views_path(flights_log))
    with ViewEngine(flights_log, view, store).open() as engine:
        engine.run()
    cut = datetime(2013, 6, 1, 12, tzinfo=NEW_YORK)  # noon: June 1 is still open
    snapshot = open_snapshot(store, "closed").as_of(event_time=cut)
    before = sum(
        1
        for r in small_flights
        if datetime.fromisoformat(r["time_hour"]).astimezone(NEW_YORK).date() < cut.date()
    )
    result = kpi(snapshot)
    assert result.column("flights").to_pylist() == [before]
    assert result.schema.metadata[b"facta.as_of_event_time"] == str(int(cut.timestamp())).encode()


def test_point_in_time_features_use_only_the_window_before_each_row(
    flights_log: Path, small_flights: list[dict[str, Any]]
) -> None:
    view = compiled("features")
    store = ViewStore(views_path(flights_log))
    with ViewEngine(flights_log, view, store).open() as engine:
        engine.run()
    # Local midnights, with no DST change inside any window (the window is in seconds).
    times = [datetime(2013, m, 15, tzinfo=NEW_YORK) for m in (5, 7, 11)]
    spine = pa.table({"carrier": ["UA", "B6", "UA"], "at": times})
    week = 7 * 86400
    result = point_in_time(
        open_snapshot(store, "features"), spine, ["carrier"], "at", week
    ).to_pylist()
    for row in result:
        start = row["at"] - timedelta(seconds=week)
        expected = sum(
            1
            for r in small_flights
            if r["carrier"] == row["carrier"]
            and start <= datetime.fromisoformat(r["time_hour"]) < row["at"]
        )
        assert row["flights"] == expected
    assert sum(r["flights"] for r in result) > 0


def test_known_at_leaves_out_facts_recorded_later(tmp_path: Path) -> None:
    from datetime import UTC

    from facta.log import NewEvent, SqliteLog
    from facta.views.engine import state_known_at
    from tests.views.conftest import FAST

    class Clock:
        now_value = datetime(2013, 1, 2, 12, tzinfo=UTC)

        def now(self) -> datetime:
            return self.now_value

    clock = Clock()
    path = tmp_path / "log.db"

    def flight(day: int) -> NewEvent:
        data = {"carrier": "AA", "origin": "JFK", "time_hour": f"2013-01-{day:02d}T15:00:00Z"}
        return NewEvent(type="FlightDeparted", data=data)

    with SqliteLog(path, FAST, clock=clock) as log:
        log.append_sync("a", [flight(1), flight(1)])  # recorded on January 2
        clock.now_value = datetime(2013, 1, 9, tzinfo=UTC)
        log.append_sync("b", [flight(1)])  # a late report, recorded a week later
    view = compiled("known")
    cut = datetime(2013, 1, 3, tzinfo=UTC)
    then = open_snapshot(state_known_at(path, view, cut), "known").as_of(event_time=cut)
    assert kpi(then).column("flights").to_pylist() == [2]
    now = open_snapshot(state_at(path, view, 3), "known").as_of(event_time=cut)
    assert kpi(now).column("flights").to_pylist() == [3]

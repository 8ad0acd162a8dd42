"""Enrichment: left as-of joins of reference tables built from the log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from facta.log import NewEvent, SqliteLog, StreamAppend
from facta.views import (
    DefinitionError,
    EngineSettings,
    ViewEngine,
    ViewStore,
    compile_view,
    load_definition,
    load_views,
    open_snapshot,
    views_path,
)
from facta.views.shapes import groups
from tests.views.conftest import FAST
from tests.views.flights import FLIGHT_FIELDS, append_flights, data_file

AIRPORTS: dict[str, Any] = {
    "source": {"types": ["AirportListed"]},
    "delete_types": ["AirportClosed"],
    "key": ["faa"],
    "fields": {"faa": "string", "name": "string", "alt": "bigint", "tzone": "string"},
}
WEATHER: dict[str, Any] = {
    "source": {"types": ["WeatherObserved"]},
    "key": ["origin"],
    "time": "time_hour",
    "fields": {"origin": "string", "time_hour": "string", "temp": "double"},
}


def enriched_view(name: str = "by_dest", **changes: Any) -> dict[str, Any]:
    table: dict[str, Any] = {
        "source": {"types": ["FlightDeparted"]},
        "fields": FLIGHT_FIELDS,
        "tables": {"airports": AIRPORTS},
        "enrich": {"dest_airport": {"table": "airports", "on": {"faa": "dest"}}},
        "extract": {"dest_zone": "coalesce(dest_airport_tzone, 'unknown')"},
        "dimensions": ["dest_zone"],
        "measures": {"flights": "count", "alt": "max(dest_airport_alt)"},
    }
    table.update(changes)
    return table


def build(path: Path, name: str, table: dict[str, Any], batch: int = 50_000) -> Any:
    view = compile_view(load_definition(name, table))
    store = ViewStore(views_path(path))
    with ViewEngine(path, view, store, EngineSettings(batch_size=batch)).open() as engine:
        engine.run()
    return open_snapshot(store, name)


def airport(faa: str, alt: int, zone: str = "America/New_York") -> NewEvent:
    data = {"faa": faa, "name": faa, "alt": alt, "tzone": zone}
    return NewEvent(type="AirportListed", data=data)


def flight(dest: str) -> NewEvent:
    data = {"carrier": "AA", "origin": "JFK", "dest": dest, "time_hour": "2013-01-01T10:00:00Z"}
    return NewEvent(type="FlightDeparted", data=data)


@pytest.mark.parametrize("batch", [1, 2, 50_000])
def test_each_event_sees_the_table_as_it_was_at_its_position(tmp_path: Path, batch: int) -> None:
    path = tmp_path / "log.db"
    with SqliteLog(path, FAST) as log:
        log.append_sync("f", [flight("BOS")])  # before the airport exists: a miss
        log.append_sync("airport-BOS", [airport("BOS", 10)])
        log.append_sync("f", [flight("BOS"), flight("BOS")])
        log.append_sync("airport-BOS", [airport("BOS", 20, "America/Boston")])
        log.append_sync("f", [flight("BOS")])
        log.append_sync("airport-BOS", [NewEvent(type="AirportClosed", data={"faa": "BOS"})])
        log.append_sync("f", [flight("BOS")])
    snapshot = build(path, "asof", enriched_view(), batch)
    table = {r["dest_zone"]: r for r in groups(snapshot).to_pylist()}
    assert table["unknown"]["flights"] == 2  # before listing and after closing
    assert table["America/New_York"]["flights"] == 2 and table["America/New_York"]["alt"] == 10
    assert table["America/Boston"]["flights"] == 1 and table["America/Boston"]["alt"] == 20
    assert snapshot.info.rejected["unmatched"] == {"airports": 2}


def test_flights_to_unlisted_airports_are_counted_unmatched(
    flights_log: Path, small_flights: list[dict[str, Any]]
) -> None:
    airports = pd.read_csv(data_file("airports.csv"), keep_default_na=False)
    with SqliteLog(flights_log, FAST) as log:
        entries = [
            StreamAppend(f"airport-{row.faa}", [airport(row.faa, int(row.alt), row.tzone)])
            for row in airports.itertuples()
        ]
        log.append_many_sync(entries)
        append_flights(log, small_flights)  # the same flights again, now after the airports
    snapshot = build(flights_log, "dest_alt", enriched_view())
    listed = set(airports["faa"])
    missing = sum(1 for row in small_flights if row["dest"] not in listed)
    assert missing > 0
    # The first copy of the flights came before any airport: all of them miss.
    assert snapshot.info.rejected["unmatched"] == {"airports": len(small_flights) + missing}
    zones = {r["dest_zone"]: r["flights"] for r in groups(snapshot).to_pylist()}
    assert zones["unknown"] == len(small_flights) + missing


def test_time_as_of_joins_the_latest_row_at_or_before_the_event_time(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    weather = [
        ("JFK", "2013-01-01T09:00:00Z", 30.0),
        ("JFK", "2013-01-01T10:00:00Z", 31.0),
        ("JFK", "2013-01-01T12:00:00Z", 35.0),
    ]
    with SqliteLog(path, FAST) as log:
        for origin, stamp, temp in weather:
            data = {"origin": origin, "time_hour": stamp, "temp": temp}
            log.append_sync("weather", [NewEvent(type="WeatherObserved", data=data)])
        for stamp in ("2013-01-01T08:00:00Z", "2013-01-01T10:00:00Z", "2013-01-01T11:30:00Z"):
            data = {"carrier": "AA", "origin": "JFK", "dest": "BOS", "time_hour": stamp}
            log.append_sync("f", [NewEvent(type="FlightDeparted", data=data)])
    table = enriched_view(
        tables={"weather": WEATHER},
        enrich={"wx": {"table": "weather", "on": {"origin": "origin"}, "asof": "time_hour"}},
        extract={},
        dimensions=["time_hour"],
        measures={"temp": "max(wx_temp)"},
    )
    found = {r["time_hour"]: r["temp"] for r in groups(build(path, "wx", table)).to_pylist()}
    assert found == {
        "2013-01-01T08:00:00Z": None,  # no observation yet at that time
        "2013-01-01T10:00:00Z": 31.0,
        "2013-01-01T11:30:00Z": 31.0,
    }


def test_enrichment_definitions_are_checked(tmp_path: Path) -> None:
    with pytest.raises(DefinitionError, match="must map every key field of 'airports'"):
        compile_view(
            load_definition("x", enriched_view(enrich={"a": {"table": "airports", "on": {}}}))
        )
    with pytest.raises(DefinitionError, match=r"'origin' is string but key weather\.origin"):
        bad = {**WEATHER, "fields": {**WEATHER["fields"], "origin": "bigint"}}
        compile_view(
            load_definition(
                "x",
                enriched_view(
                    tables={"weather": bad},
                    enrich={
                        "w": {"table": "weather", "on": {"origin": "origin"}, "asof": "time_hour"}
                    },
                    extract={},
                    dimensions=[],
                    measures={"n": "count"},
                ),
            )
        )
    with pytest.raises(DefinitionError, match="name the event's time field in asof"):
        compile_view(
            load_definition(
                "x",
                enriched_view(
                    tables={"weather": WEATHER},
                    enrich={"w": {"table": "weather", "on": {"origin": "origin"}}},
                    extract={},
                    dimensions=[],
                    measures={"n": "count"},
                ),
            )
        )
    project = tmp_path / "facta.toml"
    project.write_text(
        '[views.v]\nsource = { types = ["F"] }\nfields = { a = "string" }\n'
        'measures = { n = "count" }\nenrich = { x = { table = "nope", on = {} } }\n'
    )
    with pytest.raises(DefinitionError, match="unknown table 'nope'"):
        load_views(project)


def test_weather_as_of_matches_pandas_merge_asof_across_restarts(
    tmp_path: Path, small_flights: list[dict[str, Any]]
) -> None:
    weather = pd.read_csv(data_file("weather.csv"))[["origin", "time_hour", "temp"]]
    path = tmp_path / "log.db"
    with SqliteLog(path, FAST) as log:
        half = len(small_flights) // 2
        append_flights(log, small_flights[:half])  # these see no weather at all
        rows = weather.astype(object).where(weather.notna(), None).to_dict("records")
        for start in range(0, len(rows), 5000):
            events = [NewEvent(type="WeatherObserved", data=r) for r in rows[start : start + 5000]]
            log.append_sync("weather", events)
        append_flights(log, small_flights[half:])
    table = enriched_view(
        tables={"weather": WEATHER},
        enrich={"wx": {"table": "weather", "on": {"origin": "origin"}, "asof": "time_hour"}},
        extract={},
        dimensions=["origin"],
        measures={"temp": "mean(wx_temp)"},
    )
    view = compile_view(load_definition("wx", table))
    store = ViewStore(views_path(path))
    for until, batch in ((700, 97), (half + 3000, 1000), (10**9, 50_000)):
        with ViewEngine(path, view, store, EngineSettings(batch_size=batch)).open() as engine:
            engine.run(until=until)  # each reopening rebuilds the table as of the checkpoint
    found = {r["origin"]: r for r in groups(open_snapshot(store, "wx")).to_pylist()}
    flights = pd.DataFrame(small_flights[half:])
    flights["t"] = pd.to_datetime(flights["time_hour"], utc=True)
    observed = weather.assign(t=pd.to_datetime(weather["time_hour"], utc=True)).dropna(
        subset=["temp"]
    )
    joined = pd.merge_asof(
        flights.sort_values("t"),
        observed.sort_values("t", kind="stable")[["origin", "t", "temp"]],
        on="t",
        by="origin",
        direction="backward",
    )
    for origin, expected in joined.groupby("origin")["temp"]:
        assert found[origin]["temp_n"] == expected.notna().sum()
        assert abs(found[origin]["temp"] - expected.mean()) <= 1e-9 * expected.abs().sum()

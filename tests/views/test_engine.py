"""The engine folds the log into a view: batch-size invariant, strict, late-event safe, locked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
import pytest

from facta.log import NewEvent, SqliteLog
from facta.views import (
    DefinitionChanged,
    EngineSettings,
    ViewEngine,
    ViewLocked,
    ViewStore,
    compile_view,
    load_definition,
    open_snapshot,
    views_path,
)
from facta.views.engine import ViewError, rebuild
from facta.views.shapes import changes, groups, series
from tests.views.conftest import FAST, flights_view
from tests.views.oracle import oracle_connection, run_sql

NEW_YORK = ZoneInfo("America/New_York")

EXACT = ["flights", "delay_sum", "miles", "delay_min", "delay_max", "last_plane", "first_plane"]


def build(log_path: Path, table: dict[str, Any], batch_size: int = 50_000, **kw: Any) -> pa.Table:
    view = compile_view(
        load_definition(table["name"], {k: v for k, v in table.items() if k != "name"})
    )
    store = ViewStore(views_path(log_path))
    with ViewEngine(
        log_path, view, store, EngineSettings(batch_size=batch_size, **kw)
    ).open() as engine:
        engine.run()
    result = groups(open_snapshot(store, view.name))
    store.close()
    return result.sort_by([("carrier", "ascending"), ("origin", "ascending")])


def test_results_do_not_depend_on_batch_size(flights_log: Path, tmp_path: Path) -> None:
    whole = build(flights_log, flights_view("whole"))
    # A different views file per run, so each build starts from nothing.
    copy = tmp_path / "copy.db"
    copy.write_bytes(flights_log.read_bytes())
    split = build(copy, flights_view("whole"), batch_size=37, commit_every_events=100)
    assert whole.num_rows > 10
    assert whole.select(EXACT).to_pylist() == split.select(EXACT).to_pylist()
    for name in ("delay", "delay_var", "delay_sd", "delay_cov", "delay_r"):
        for a, b in zip(
            whole.column(name).to_pylist(), split.column(name).to_pylist(), strict=True
        ):
            assert (a is None and b is None) or abs(a - b) <= 1e-9 * max(1.0, abs(a))
    assert whole.column("planes").to_pylist() == split.column("planes").to_pylist()


def test_wrong_types_are_rejected_values_and_bad_times_rejected_events(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    with SqliteLog(path, FAST) as log:
        good = {
            "carrier": "AA",
            "origin": "JFK",
            "dep_delay": 5.0,
            "time_hour": "2013-01-01T10:00:00Z",
        }
        log.append_sync("f-1", [NewEvent(type="FlightDeparted", data=good)])
        log.append_sync("f-2", [NewEvent(type="FlightDeparted", data={**good, "dep_delay": "12"})])
        log.append_sync(
            "f-3", [NewEvent(type="FlightDeparted", data={**good, "time_hour": "2013-01-01 10:00"})]
        )
        log.append_sync("f-4", [NewEvent(type="FlightDeparted", data={**good, "time_hour": None})])
        log.append_sync("f-5", [NewEvent(type="FlightDeparted", data={**good, "distance": 1.5})])
    table = flights_view("strict", measures={"n": "count", "delay": "mean(dep_delay)"})
    result = build(path, table)
    # Events 1, 2 and 5 are counted; event 2's delay is rejected, so the mean sees two values.
    assert result.column("n").to_pylist() == [3]
    assert result.column("delay").to_pylist() == [5.0]
    assert result.column("delay_n").to_pylist() == [2]
    store = ViewStore(views_path(path))
    rejected = store.current("strict").rejected  # type: ignore[union-attr]
    assert rejected["events"] == {"count": 2, "positions": [3, 4]}
    assert rejected["values"] == {
        "dep_delay": {"count": 1, "positions": [2]},
        "distance": {"count": 1, "positions": [5]},
    }


def maintainer(
    log_path: Path, table: dict[str, Any], batch: int, every: int, mode: str = ""
) -> Any:
    import subprocess
    import sys

    args = [sys.executable, "-m", "tests.views.maintainer", str(log_path), json.dumps(table)]
    return subprocess.Popen(
        [*args, str(batch), str(every), *([mode] if mode else [])],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[2],
    )


def test_a_maintainer_killed_anywhere_resumes_without_double_counting(
    flights_log: Path, tmp_path: Path
) -> None:
    import random

    rng = random.Random(4)
    table = flights_view("crashy")
    store = ViewStore(views_path(flights_log))
    checkpoints = [0]
    kills = 0
    for run in range(6):
        batch = rng.choice([1, 3, 17, 60])
        every = rng.choice([1, 5, 40])
        if run % 2 == 0:
            # Killed by itself inside a commit transaction, after writing cells and checkpoint.
            child = maintainer(
                flights_log, table, batch, every, f"die-in-commit:{rng.randint(3, 8)}"
            )
            child.wait(60)
        else:
            child = maintainer(flights_log, table, batch, every)
            assert child.stdout is not None
            for _ in range(rng.randint(4, 12)):
                assert child.stdout.readline().startswith("commit")
            child.kill()
            child.wait(60)
        assert child.returncode == -9
        kills += 1
        current = store.current("crashy")
        assert current is not None
        assert current.checkpoint > checkpoints[-1], "each run must commit progress before dying"
        checkpoints.append(current.checkpoint)
    finisher = maintainer(flights_log, table, 500, 500)
    out, _ = finisher.communicate(timeout=120)
    assert finisher.returncode == 0 and out.splitlines()[-1].startswith("done")
    current = store.current("crashy")
    assert current is not None and current.batches >= 20 and kills >= 5
    crashed = groups(open_snapshot(store, "crashy")).sort_by(
        [("carrier", "ascending"), ("origin", "ascending")]
    )
    clean_log = tmp_path / "clean.db"
    clean_log.write_bytes(flights_log.read_bytes())
    clean = build(clean_log, flights_view("crashy"))
    assert crashed.select(EXACT).to_pylist() == clean.select(EXACT).to_pylist()
    assert crashed.column("planes").to_pylist() == clean.column("planes").to_pylist()
    assert sum(crashed.column("flights").to_pylist()) == 3000
    # And against the hand-written oracle SQL, cell by cell (carrier × origin × local day).
    per_day = groups(open_snapshot(store, "crashy"), per_bucket=True).to_pylist()
    mine = {
        (r["carrier"], r["origin"], r["bucket"].astimezone(NEW_YORK).date()): r for r in per_day
    }
    oracle = run_sql(oracle_connection(flights_log), "delays")
    assert len(oracle) == len(mine)
    for expected in oracle:
        found = mine[(expected["carrier"], expected["origin"], expected["local_day"])]
        for name in ("flights", "delay_n", "miles", "delay_min", "delay_max", "last_plane"):
            assert found[name] == expected[name], (name, expected, found)


def test_a_second_maintainer_exits_naming_the_holder(flights_log: Path) -> None:
    table = flights_view("locked")
    holder = maintainer(flights_log, table, 1, 1)
    assert holder.stdout is not None
    assert holder.stdout.readline().startswith("commit")
    view = compile_view(load_definition("locked", {k: v for k, v in table.items() if k != "name"}))
    store = ViewStore(views_path(flights_log))
    try:
        with pytest.raises(ViewLocked) as caught:
            ViewEngine(flights_log, view, store).open()
        assert caught.value.holder == f"pid {holder.pid} on {__import__('socket').gethostname()}"
    finally:
        holder.kill()
        holder.wait(60)
    # The holder is gone: its lock is taken over.
    engine = ViewEngine(flights_log, view, store).open()
    assert store.holder("locked") is not None and str(__import__("os").getpid()) in store.holder(
        "locked"
    )  # type: ignore[operator]
    engine.close()


def small_view(name: str, **changes: Any) -> Any:
    table = {k: v for k, v in flights_view(name, **changes).items() if k != "name"}
    return compile_view(load_definition(name, table))


def test_late_events_update_their_bucket_and_mark_the_position(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    store = ViewStore(views_path(path))
    view = small_view("late", measures={"n": "count", "delay": "sum(dep_delay)"})

    def flight(day: int, delay: float) -> NewEvent:
        data = {"carrier": "AA", "origin": "JFK", "dep_delay": delay}
        return NewEvent(
            type="FlightDeparted", data={**data, "time_hour": f"2013-03-{day:02d}T15:00:00Z"}
        )

    with SqliteLog(path, FAST) as log, ViewEngine(path, view, store).open() as engine:
        log.append_sync("a", [flight(1, 1.0), flight(2, 2.0), flight(3, 3.0)])
        engine.run()
        snapshot = open_snapshot(store, "late")
        old = series(snapshot, group_by=())
        log.append_sync("b", [flight(1, 10.0)])  # late: day 1 was persisted and queried
        engine.run()
        new = series(open_snapshot(store, "late", min_position=4), group_by=())
    assert old.column("n").to_pylist() == [1, 1, 1] and new.column("n").to_pylist() == [2, 1, 1]
    assert new.column("delay").to_pylist() == [11.0, 2.0, 3.0]
    assert new.column("changed_at").to_pylist() == [4, 2, 3]
    since = changes(open_snapshot(store, "late"), 3).to_pylist()
    assert [(r["delay"], r["changed_at"]) for r in since] == [(11.0, 4)]
    assert old.schema.metadata[b"facta.position"] == b"3"
    assert new.schema.metadata[b"facta.position"] == b"4"


def test_a_changed_definition_needs_a_rebuild_which_swaps_generations(flights_log: Path) -> None:
    store = ViewStore(views_path(flights_log))
    first = small_view("evolving", measures={"n": "count"})
    with ViewEngine(flights_log, first, store).open() as engine:
        engine.run()
    old_generation = store.current("evolving").generation  # type: ignore[union-attr]
    second = small_view("evolving", measures={"n": "count", "d": "mean(dep_delay)"})
    with pytest.raises(DefinitionChanged, match="rebuild it"):
        ViewEngine(flights_log, second, store).open()
    seen: list[tuple[int, int]] = []
    engine = rebuild(
        flights_log,
        second,
        store,
        EngineSettings(batch_size=500),
        progress=lambda a, b: seen.append((a, b)),
    )
    engine.close()
    current = store.current("evolving")
    assert current is not None and current.generation == old_generation + 1
    assert current.definition_hash == second.definition_hash
    assert seen[-1][0] == seen[-1][1] and len(seen) >= 6
    table = groups(open_snapshot(store, "evolving"), group_by=())
    assert table.column("n").to_pylist() == [3000]
    assert store.generation("evolving", old_generation) is None  # the old state is dropped


def test_an_integer_sum_overflow_names_view_measure_and_group(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    view = small_view("huge", measures={"miles": "sum(distance)"})
    data = {
        "carrier": "AA",
        "origin": "JFK",
        "distance": 2**62,
        "time_hour": "2013-01-01T10:00:00Z",
    }
    with SqliteLog(path, FAST) as log:
        log.append_sync("a", [NewEvent(type="FlightDeparted", data=data)] * 2)
    store = ViewStore(views_path(path))
    with ViewEngine(path, view, store).open() as engine, pytest.raises(ViewError) as caught:
        engine.run()
    message = str(caught.value)
    assert "'huge'" in message and "'miles'" in message and '["AA","JFK"]' in message
    assert "outside the signed 64-bit range" in message

"""facta beside the ``eventsourcing`` library on the same work (``facta bench log --vs``).

Three shapes, both libraries on SQLite in WAL mode with the same pre-generated data: one event
per durable save into one stream, saves of 100 events, and reading every event back decoded
with one data field read per event. Each side keeps its own defaults otherwise (eventsourcing
runs on stdlib ``sqlite3``; its ``synchronous`` is read back and reported).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

from facta.bench.method import Run, alternate, fresh_path, make_line
from facta.bench.rows import Row, make_rows
from facta.log import SqliteLog

LIBRARY = "eventsourcing"


class Ledger(Aggregate):
    """One aggregate that records every event, as facta appends them to one stream."""

    def __init__(self) -> None:
        self.quantity = 0

    @event("Recorded")
    def record(self, data: dict[str, Any], metadata: dict[str, Any]) -> None:
        self.quantity += data["quantity"]


@contextmanager
def _application(path: str) -> Iterator[Any]:
    application: Application[UUID] = Application(
        env={"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": path}
    )
    try:
        yield application
    finally:
        application.close()


def _synchronous(application: Any) -> str:
    with application.recorder.datastore.get_connection(commit=False) as conn:
        value = conn._sqlite_conn.execute("PRAGMA synchronous").fetchone()[0]
    return {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(value, str(value))


def _es_saves(rows: list[Row], per_save: int) -> Run:
    with fresh_path("es.db") as path, _application(path) as app:
        ledger = Ledger()
        app.save(ledger)
        started = time.perf_counter()
        for start in range(0, len(rows), per_save):
            for row in rows[start : start + per_save]:
                ledger.record(row.event.data, row.event.metadata)
            app.save(ledger)
        seconds = time.perf_counter() - started
        extra = {"synchronous": _synchronous(app), "journal_mode": _journal_mode(path)}
    return Run(len(rows) / seconds, extra)


def _facta_saves(rows: list[Row], per_save: int) -> Run:
    with fresh_path("facta.db") as path, SqliteLog(path) as log:
        durability = log.effective_durability()
        version = 0
        started = time.perf_counter()
        for start in range(0, len(rows), per_save):
            chunk = [row.event for row in rows[start : start + per_save]]
            log.append_sync("ledger-1", chunk, expect=version)
            version += len(chunk)
        seconds = time.perf_counter() - started
    return Run(len(rows) / seconds, {"durability": durability})


def _journal_mode(path: str) -> str:
    conn = sqlite3.connect(path)
    try:
        return str(conn.execute("PRAGMA journal_mode").fetchone()[0])
    finally:
        conn.close()


@contextmanager
def _es_filled(rows: list[Row]) -> Iterator[tuple[str, UUID]]:
    with fresh_path("es-read.db") as path:
        with _application(path) as app:
            ledger = Ledger()
            for start in range(0, len(rows), 1000):
                for row in rows[start : start + 1000]:
                    ledger.record(row.event.data, row.event.metadata)
                app.save(ledger)
            ledger_id = ledger.id
        yield path, ledger_id


def _es_read(path: str, ledger_id: UUID, expected: int) -> Run:
    with _application(path) as app:
        started = time.perf_counter()
        total, count = 0, 0
        for event in app.events.get(ledger_id):
            if count:  # the first event is the creation, which carries no data
                total += event.data["quantity"]
            count += 1
        seconds = time.perf_counter() - started
    if count != expected + 1:
        raise RuntimeError(f"eventsourcing read {count} events, expected {expected + 1}")
    return Run(expected / seconds)


@contextmanager
def _facta_filled(rows: list[Row]) -> Iterator[str]:
    with fresh_path("facta-read.db") as path:
        with SqliteLog(path) as log:
            for start in range(0, len(rows), 1000):
                log.append_sync("ledger-1", [row.event for row in rows[start : start + 1000]])
        yield path


def _facta_read(path: str, expected: int, page: int) -> Run:
    with SqliteLog(path) as log:
        durability = log.effective_durability()
        started = time.perf_counter()
        total, count, version = 0, 0, 1
        while True:
            events = log.read_stream_sync("ledger-1", from_version=version, limit=page)
            for event in events:
                total += event.data["quantity"]
            count += len(events)
            if len(events) < page:
                break
            version = events[-1].version + 1
        seconds = time.perf_counter() - started
    if count != expected:
        raise RuntimeError(f"facta read {count} events, expected {expected}")
    return Run(expected / seconds, {"durability": durability})


def versus_eventsourcing(*, quick: bool, pairs: int) -> Iterator[dict[str, Any]]:
    """Three lines: facta's figure as ``value``, eventsourcing's as ``baseline_value``."""
    version = _library_version()
    singles = make_rows(200 if quick else 3_000)
    batched = make_rows(2_000 if quick else 50_000)
    for per_save, rows, name in ((1, singles, "single_saves"), (100, batched, "saves_of_100")):
        result = alternate(
            pairs,
            lambda rows=rows, per_save=per_save: _es_saves(rows, per_save),  # type: ignore[misc]
            lambda rows=rows, per_save=per_save: _facta_saves(rows, per_save),  # type: ignore[misc]
        )
        yield make_line(
            f"vs_eventsourcing_{name}",
            unit="events/s",
            baseline_name=f"eventsourcing {version}, one aggregate, {per_save} per save",
            goal=None,
            pairs=result,
            extra={
                "n": len(rows),
                "baseline_synchronous": result.baseline[-1].extra["synchronous"],
                "baseline_journal_mode": result.baseline[-1].extra["journal_mode"],
            },
        )
    with _es_filled(batched) as (es_path, ledger_id), _facta_filled(batched) as facta_path:
        result = alternate(
            pairs,
            lambda: _es_read(es_path, ledger_id, len(batched)),
            lambda: _facta_read(facta_path, len(batched), 1000),
        )
    yield make_line(
        "vs_eventsourcing_read_decoded",
        unit="events/s",
        baseline_name=f"eventsourcing {version}, events.get of one aggregate",
        goal=None,
        pairs=result,
        extra={"n": len(batched), "page": 1000},
    )


def _library_version() -> str:
    from importlib.metadata import version

    return version(LIBRARY)

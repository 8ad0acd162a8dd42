"""The append benchmarks: sequential, concurrent, sustained and batched, each against raw SQLite.

Every facta append carries an exact expectation and an idempotency key, under ``strict``
durability; the baseline writes the same pre-generated rows with no checks at all.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import apsw

from facta.bench.method import Run, alternate, fresh_path, make_line, percentile
from facta.bench.raw import (
    caller_rounds,
    commit_per_batch,
    commit_per_row,
    raw_tuples,
    schema_group_commits,
    schema_per_batch,
    schema_per_row,
    schema_tuples,
)
from facta.bench.rows import Row, make_rows, row_sizes
from facta.log import NewEvent, SqliteLog, WrongExpectedVersion

RAW_PER_ROW = "raw apsw INSERT + COMMIT per row (FULL, WAL)"


@dataclass(frozen=True)
class Sizes:
    """How much work each benchmark does; ``quick`` shrinks it for the smoke test."""

    sequential: int
    callers: int
    per_caller: int
    sustained_per_caller: int
    batches: int
    batch_events: int
    read_events: int

    @classmethod
    def full(cls) -> Sizes:
        return cls(15_000, 64, 500, 1_563, 200, 1_000, 1_000_000)

    @classmethod
    def quick(cls) -> Sizes:
        return cls(300, 16, 60, 120, 6, 1_000, 20_000)


def _raw_per_row(rows: list[Row]) -> Run:
    params = raw_tuples(rows, 1)
    with fresh_path("raw.db") as path:
        seconds = commit_per_row(path, params)
    return Run(len(params) / seconds)


# -- one caller ----------------------------------------------------------------------------------


def _facta_sequential(rows: list[Row], streams: int) -> Run:
    with fresh_path("facta.db") as path, SqliteLog(path) as log:
        durability = log.effective_durability()
        versions = [0] * streams
        started = time.perf_counter()
        for index, row in enumerate(rows):
            stream = index % streams
            log.append_sync(
                f"order-{stream}", [row.event], expect=versions[stream], key=f"seq-{index}"
            )
            versions[stream] += 1
        seconds = time.perf_counter() - started
        if log.head_sync() != len(rows):
            raise RuntimeError(f"sequential run wrote {log.head_sync()} events, not {len(rows)}")
    return Run(len(rows) / seconds, {"durability": durability})


def _schema_per_row(rows: list[Row], streams: int) -> Run:
    params = schema_tuples(rows, streams)
    with fresh_path("schema.db") as path:
        seconds = schema_per_row(path, params)
    return Run(len(params) / seconds)


def append_sequential_strict(sizes: Sizes, pairs: int) -> dict[str, Any]:
    rows = make_rows(sizes.sequential)
    streams = 100
    result = alternate(
        pairs,
        lambda: _raw_per_row(rows),
        lambda: _facta_sequential(rows, streams),
        lambda: _schema_per_row(rows, streams),
    )
    return make_line(
        "append_sequential_strict",
        unit="events/s",
        baseline_name=RAW_PER_ROW,
        goal=0.85,
        pairs=result,
        extra={"n": len(rows), "streams": streams, **row_sizes(rows)},
    )


# -- many callers --------------------------------------------------------------------------------


@dataclass
class _CallerStats:
    written: int = 0
    refused: int = 0


async def _caller(
    log: SqliteLog, caller: int, rows: list[Row], wrong_every: int, latencies: list[float]
) -> _CallerStats:
    stats = _CallerStats()
    stream = f"caller-{caller}"
    for index, row in enumerate(rows):
        wrong = _is_wrong(index, wrong_every)
        expect = stats.written + 1 if wrong else stats.written
        started = time.perf_counter()
        try:
            await log.append(stream, [row.event], expect=expect, key=f"{stream}-{index}")
        except WrongExpectedVersion:
            stats.refused += 1
        else:
            stats.written += 1
        latencies.append(time.perf_counter() - started)
    return stats


def _verify(path: str, written: int, versions: dict[str, int]) -> None:
    """Counts and gap-free positions, checked on the file after the log is closed."""
    conn = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READONLY)
    try:
        count, low, high = _one(conn, "SELECT count(*), min(position), max(position) FROM events")
        if count != written or (count and (low, high) != (1, count)):
            raise RuntimeError(
                f"expected {written} events at positions 1..{written}, found {count} "
                f"at {low}..{high}"
            )
        for stream, version in versions.items():
            found = _one(conn, "SELECT count(*), max(version) FROM events WHERE stream = ?", stream)
            if found != (version, version or None):
                raise RuntimeError(f"stream {stream}: expected version {version}, found {found}")
    finally:
        conn.close()


def _one(conn: apsw.Connection, sql: str, *params: Any) -> tuple[Any, ...]:
    row = conn.execute(sql, params).fetchone()
    if row is None:
        raise RuntimeError(f"no row from {sql!r}")
    return tuple(row)


def _facta_concurrent(rows: list[Row], callers: int, wrong_every: int) -> Run:
    per_caller = len(rows) // callers
    latencies: list[float] = []
    with fresh_path("facta.db") as path:
        log = SqliteLog(path)
        try:
            durability = log.effective_durability()

            async def main() -> list[_CallerStats]:
                tasks = [
                    _caller(
                        log,
                        c,
                        rows[c * per_caller : (c + 1) * per_caller],
                        wrong_every,
                        latencies,
                    )
                    for c in range(callers)
                ]
                return await asyncio.gather(*tasks)

            started = time.perf_counter()
            stats = asyncio.run(main())
            seconds = time.perf_counter() - started
            process = log.stats_sync().process
        finally:
            log.close()
        written = sum(s.written for s in stats)
        refused = sum(s.refused for s in stats)
        expected_refused = callers * _wrong_per_caller(per_caller, wrong_every)
        if refused != expected_refused:
            raise RuntimeError(f"expected {expected_refused} refused appends, found {refused}")
        _verify(path, written, {f"caller-{c}": s.written for c, s in enumerate(stats)})
    return Run(
        written / seconds,
        {
            "durability": durability,
            "p50_ms": percentile(latencies, 0.50) * 1000,
            "p99_ms": percentile(latencies, 0.99) * 1000,
            "refused": refused,
            "written": written,
            "checkpoints": process["wal_checkpoints"],
            "mean_batch": process["batch_appends"]["mean"],
        },
    )


def _schema_concurrent(rows: list[Row], callers: int, wrong_every: int) -> Run:
    """The schema floor of the concurrent lines: the appends the callers' runs write (the
    wrongly expected ones left out, as facta refuses them), one append per caller per commit —
    the largest group commit ``callers`` callers waiting on their appends can make."""
    appends = caller_rounds(rows, callers, lambda index: _is_wrong(index, wrong_every))
    with fresh_path("schema.db") as path:
        seconds = schema_group_commits(path, appends, callers)
    return Run(len(appends) / seconds)


def _is_wrong(index: int, wrong_every: int) -> bool:
    """Whether a caller's ``index``-th append is one of its deliberately wrong expectations."""
    return index % wrong_every == wrong_every // 2


def _wrong_per_caller(per_caller: int, wrong_every: int) -> int:
    return len(range(wrong_every // 2, per_caller, wrong_every))


def _concurrent_line(
    name: str, goal: float, callers: int, per_caller: int, pairs: int
) -> dict[str, Any]:
    rows = make_rows(callers * per_caller)
    result = alternate(
        pairs,
        lambda: _raw_per_row(rows),
        lambda: _facta_concurrent(rows, callers, 100),
        lambda: _schema_concurrent(rows, callers, 100),
    )
    p50 = [r.extra["p50_ms"] for r in result.facta]
    p99 = [r.extra["p99_ms"] for r in result.facta]
    return make_line(
        name,
        unit="events/s",
        baseline_name=RAW_PER_ROW,
        goal=goal,
        pairs=result,
        extra={
            "n": len(rows),
            "callers": callers,
            "per_caller": per_caller,
            "wrong_expectations": callers * _wrong_per_caller(per_caller, 100),
            "written": result.facta[-1].extra["written"],
            "refused": result.facta[-1].extra["refused"],
            "p50_ms": round(sorted(p50)[len(p50) // 2], 3),
            "p99_ms": round(sorted(p99)[len(p99) // 2], 3),
            "p99_goal_ms": 6.0,
            "checkpoints": [r.extra["checkpoints"] for r in result.facta],
            "mean_batch": [round(r.extra["mean_batch"], 1) for r in result.facta],
            **row_sizes(rows),
        },
    )


def append_concurrent_strict(sizes: Sizes, pairs: int) -> dict[str, Any]:
    return _concurrent_line("append_concurrent_strict", 4.2, sizes.callers, sizes.per_caller, pairs)


def append_concurrent_sustained(sizes: Sizes, pairs: int) -> dict[str, Any]:
    return _concurrent_line(
        "append_concurrent_sustained", 3.2, sizes.callers, sizes.sustained_per_caller, pairs
    )


# -- batches -------------------------------------------------------------------------------------


def _facta_batches(rows: list[Row], batch: int, streams: int) -> Run:
    events = [row.event for row in rows]
    chunks: list[list[NewEvent]] = [events[i : i + batch] for i in range(0, len(events), batch)]
    with fresh_path("facta.db") as path, SqliteLog(path) as log:
        durability = log.effective_durability()
        versions = [0] * streams
        started = time.perf_counter()
        for index, chunk in enumerate(chunks):
            stream = index % streams
            log.append_sync(f"batch-{stream}", chunk, expect=versions[stream], key=f"batch-{index}")
            versions[stream] += len(chunk)
        seconds = time.perf_counter() - started
        if log.head_sync() != len(rows):
            raise RuntimeError(f"batch run wrote {log.head_sync()} events, not {len(rows)}")
    return Run(len(rows) / seconds, {"durability": durability})


def _raw_batches(rows: list[Row], batch: int, streams: int) -> Run:
    params = raw_tuples(rows, streams)
    with fresh_path("raw.db") as path:
        seconds = commit_per_batch(path, params, batch)
    return Run(len(params) / seconds)


def _schema_batches(rows: list[Row], batch: int, streams: int) -> Run:
    params = schema_tuples(rows, streams, batch)
    with fresh_path("schema.db") as path:
        seconds = schema_per_batch(path, params, batch)
    return Run(len(params) / seconds)


def append_batch_strict(sizes: Sizes, pairs: int) -> dict[str, Any]:
    rows = make_rows(sizes.batches * sizes.batch_events)
    streams, batch = 10, sizes.batch_events
    result = alternate(
        pairs,
        lambda: _raw_batches(rows, batch, streams),
        lambda: _facta_batches(rows, batch, streams),
        lambda: _schema_batches(rows, batch, streams),
    )
    return make_line(
        "append_batch_strict",
        unit="events/s",
        baseline_name=f"raw apsw executemany, {batch} rows per transaction (FULL, WAL)",
        goal=0.65,
        pairs=result,
        extra={"n": len(rows), "batch": batch, "streams": streams, **row_sizes(rows)},
    )

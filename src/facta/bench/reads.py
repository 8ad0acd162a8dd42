"""Reading the whole log back, decoded, against fetching the same rows undecoded."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from facta.bench.method import Pairs, Run, fresh_path, make_line, median
from facta.bench.raw import fetch_apsw, fetch_stdlib, stdlib_sqlite_version
from facta.bench.rows import make_rows
from facta.log import SqliteLog, StreamAppend

PAGE = 1000
_FILL_CHUNK = 10_000


@contextmanager
def filled_log(events: int) -> Iterator[str]:
    """A fresh log holding ``events`` bench rows over 1,000 streams, written in big appends."""
    with fresh_path("read.db") as path:
        with SqliteLog(path) as log:
            written = 0
            while written < events:
                rows = make_rows(min(_FILL_CHUNK, events - written), seed=written)
                by_stream: dict[int, list[Any]] = {}
                for offset, row in enumerate(rows):
                    by_stream.setdefault((written + offset) % 1000, []).append(row.event)
                log.append_many_sync(
                    [StreamAppend(f"reader-{s}", tuple(evs)) for s, evs in by_stream.items()]
                )
                written += len(rows)
            log.checkpoint_sync("TRUNCATE")
        yield path


def _facta_read(path: str, expected: int) -> Run:
    durability: dict[str, Any] = {}

    async def read_everything() -> tuple[int, int]:
        after, count, total = 0, 0, 0
        async with SqliteLog(path) as log:
            durability.update(log.effective_durability())
            while True:
                page = await log.read_all(after=after, limit=PAGE)
                if not page:
                    return count, total
                for event in page:
                    total += event.data["quantity"]
                count += len(page)
                after = page[-1].position

    started = time.perf_counter()
    count, _ = asyncio.run(read_everything())
    seconds = time.perf_counter() - started
    if count != expected:
        raise RuntimeError(f"read_all returned {count} events, expected {expected}")
    return Run(count / seconds, {"durability": durability})


def _raw_read(fetch: Any, path: str, expected: int) -> Run:
    seconds, count = fetch(path, PAGE)
    if count != expected:
        raise RuntimeError(f"raw fetch returned {count} rows, expected {expected}")
    return Run(count / seconds)


def read_all_decoded(events: int, pairs: int) -> dict[str, Any]:
    with filled_log(events) as path:
        stdlib = Pairs([], [])
        apsw_raw: list[Run] = []
        for _ in range(pairs):  # A B C, A B C, ...: both baselines alternate with facta
            stdlib.baseline.append(_raw_read(fetch_stdlib, path, events))
            stdlib.facta.append(_facta_read(path, events))
            apsw_raw.append(_raw_read(fetch_apsw, path, events))
    vs_apsw = median([f.value / a.value for f, a in zip(stdlib.facta, apsw_raw, strict=True)])
    return make_line(
        "read_all_decoded",
        unit="events/s",
        baseline_name=f"stdlib sqlite3 {stdlib_sqlite_version()} fetch, undecoded",
        goal=0.5,
        pairs=stdlib,
        extra={
            "n": events,
            "page": PAGE,
            "apsw_raw_value": round(median([r.value for r in apsw_raw]), 1),
            "ratio_vs_apsw_raw": round(vs_apsw, 3),
        },
    )

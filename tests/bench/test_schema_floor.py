"""The concurrent lines' schema floor writes what facta's callers write: the same events in the
same streams at the same versions, under the same keys (only the order of positions differs)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import apsw

from facta.bench.appends import _caller, _is_wrong
from facta.bench.raw import caller_rounds, schema_group_commits
from facta.bench.rows import make_rows
from facta.log import SqliteLog

CALLERS, PER_CALLER, WRONG_EVERY = 8, 30, 10


def _written(path: Path) -> tuple[set[tuple[str, int, str]], set[str]]:
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        events = {(s, v, d) for s, v, d in conn.execute("SELECT stream, version, data FROM events")}
        keys = {k for (k,) in conn.execute("SELECT key FROM outcomes")}
        (count, low, high) = conn.execute(
            "SELECT count(*), min(position), max(position) FROM events"
        ).fetchone() or (0, 0, 0)
        assert (low, high) == (1, count), "positions must be gap-free"
        return events, keys
    finally:
        conn.close()


def test_floor_writes_the_events_and_keys_facta_writes(tmp_path: Path) -> None:
    rows = make_rows(CALLERS * PER_CALLER)
    floor_path = tmp_path / "floor.db"
    appends = caller_rounds(rows, CALLERS, lambda index: _is_wrong(index, WRONG_EVERY))
    assert schema_group_commits(str(floor_path), appends, CALLERS) > 0

    facta_path = tmp_path / "facta.db"
    with SqliteLog(facta_path) as log:

        async def callers() -> None:
            slices = [rows[c * PER_CALLER : (c + 1) * PER_CALLER] for c in range(CALLERS)]
            latencies: list[float] = []
            await asyncio.gather(
                *(_caller(log, c, part, WRONG_EVERY, latencies) for c, part in enumerate(slices))
            )

        asyncio.run(callers())

    floor_events, floor_keys = _written(floor_path)
    facta_events, facta_keys = _written(facta_path)
    assert len(floor_events) == CALLERS * (PER_CALLER - PER_CALLER // WRONG_EVERY)
    assert floor_events == facta_events
    assert floor_keys == facta_keys

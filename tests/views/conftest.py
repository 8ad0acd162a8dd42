from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from facta.log import LogConfig, SqliteLog
from tests.views.flights import FLIGHT_FIELDS, append_flights, flight_rows

FAST = LogConfig(durability="normal", max_append_events=10_000)


def flights_view(name: str = "delays", **changes: Any) -> dict[str, Any]:
    """A view over flight events: carrier × origin × local day, most measure kinds."""
    table: dict[str, Any] = {
        "name": name,
        "source": {"types": ["FlightDeparted"]},
        "fields": FLIGHT_FIELDS,
        "dimensions": ["carrier", "origin"],
        "bucket": {"field": "time_hour", "width": "1d", "timezone": "America/New_York"},
        "measures": {
            "flights": "count",
            "delay_sum": "sum(dep_delay)",
            "miles": "sum(distance)",
            "delay": "mean(dep_delay)",
            "delay_var": "variance(dep_delay)",
            "delay_sd": "stddev_pop(dep_delay)",
            "delay_min": "min(dep_delay)",
            "delay_max": "max(dep_delay)",
            "delay_cov": "covariance(dep_delay, arr_delay)",
            "delay_r": "correlation(dep_delay, arr_delay)",
            "last_plane": "latest(tailnum)",
            "first_plane": "first(tailnum)",
            "delay_q": "quantiles(dep_delay)",
            "dests": "top_k(dest, k=5)",
            "planes": "distinct(tailnum)",
        },
    }
    table.update(changes)
    return table


@pytest.fixture(scope="session")
def small_flights() -> list[dict[str, Any]]:
    return flight_rows(3000)


@pytest.fixture
def flights_log(tmp_path: Path, small_flights: list[dict[str, Any]]) -> Iterator[Path]:
    path = tmp_path / "flights.db"
    with SqliteLog(path, FAST) as log:
        append_flights(log, small_flights)
    yield path


@pytest.fixture(scope="module")
def shared_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, SqliteLog]]:
    """One log for a test module whose tests each append their own events and read them back."""
    path = tmp_path_factory.mktemp("shared") / "log.db"
    with SqliteLog(path, FAST) as log:
        yield path, log

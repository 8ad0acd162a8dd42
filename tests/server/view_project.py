"""A project file with one flights view, and a log of real flights, for server view tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from facta.log import LogConfig, SqliteLog
from tests.views.flights import FLIGHT_FIELDS, append_flights, flight_rows

FAST = LogConfig(durability="normal", max_append_events=10_000)


def project_text(name: str = "delays", description: str = "Delays per carrier and origin") -> str:
    fields = "\n".join(f'{key} = "{kind}"' for key, kind in FLIGHT_FIELDS.items())
    return f"""# a test project (comments are kept by the dashboard)
[views.{name}]
description = "{description}"
source = {{ types = ["FlightDeparted"] }}
dimensions = ["carrier", "origin"]
bucket = {{ field = "time_hour", width = "1d", timezone = "America/New_York" }}

[views.{name}.fields]
{fields}

[views.{name}.measures]
flights = "count"
delay = "mean(dep_delay)"
miles = "sum(distance)"
delay_q = {{ kind = "quantiles", field = "dep_delay", k = 200 }}
gain_cov = "covariance(dep_delay, arr_delay)"
"""


def write_project(directory: Path, text: str | None = None) -> Path:
    path = directory / "facta.toml"
    path.write_text(project_text() if text is None else text)
    return path


def fill_log(path: Path, count: int, *, seed: int = 13) -> list[dict[str, Any]]:
    rows = flight_rows(count, seed=seed)
    with SqliteLog(path, FAST) as log:
        append_flights(log, rows)
    return rows


def facta_apply(log: Path, project: Path, cwd: Path | None = None) -> str:
    """Run ``facta apply`` for ``project`` in a process of its own, as a user would; its
    output."""
    command = ["-c", "from facta.cli.app import main; main()", "apply"]
    applied = subprocess.run(
        [sys.executable, *command, "--log", str(log), "--project", str(project)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )
    assert applied.returncode == 0, applied.stderr
    return applied.stdout

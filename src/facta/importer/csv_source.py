"""CSV files: a header row, then records; types inferred per column over the whole file."""

from __future__ import annotations

import bisect
import csv
import functools
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from facta.importer.records import Format, RawBatch, Records, arrow_rows, unique_columns
from facta.log import InvalidInput

# A strptime pattern no field can match: pyarrow then infers no timestamp, and the text stays.
_NO_TIMESTAMPS = "\x00\x01%Y"


class CsvSource:
    """CSV with a header row. Types are inferred per column by pyarrow over the whole file.

    Numbers become ints or floats, ``true``/``false`` booleans; an empty field and the usual
    missing markers (``NA``, ``NULL``, ``NaN``, …) unquoted are null; dates and times stay text,
    as written. A record with the wrong number of fields is a problem record.
    """

    format: Format = "csv"

    def __init__(self, path: Path) -> None:
        self.path = path
        header, self._lines, self._bad = self._scan(path)
        self.columns = unique_columns(header, path)
        self.total = len(self._lines)
        self._bad_indexes = sorted(self._bad)
        self._table = self._read_table(path)
        good = self.total - len(self._bad)
        if self._table.num_rows != good:
            raise InvalidInput(
                f"{str(path)!r}: found {good} well-formed records but pyarrow read "
                f"{self._table.num_rows} rows; the file's quoting is ambiguous"
            )

    @staticmethod
    def _scan(path: Path) -> tuple[list[str], array[int], dict[int, tuple[str, Any]]]:
        """Record start lines and malformed records (wrong number of fields)."""
        raw = path.read_bytes()
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw.count(b"\n", 0, exc.start) + 1
            raise InvalidInput(f"{str(path)!r} line {line} is not UTF-8 text: {exc}") from None
        if b'"' not in raw and raw.count(b"\r") == raw.count(b"\r\n"):
            return _scan_plain(raw, path)
        return _scan_quoted(path)

    def _read_table(self, path: Path) -> Any:
        import pyarrow as pa
        import pyarrow.csv as pacsv

        def read(types: dict[str, Any]) -> Any:
            return pacsv.read_csv(
                path,
                # One thread: as fast here, and pyarrow's worker threads calling the Python
                # row handler could abort the interpreter at exit (seen ~1 run in 80).
                read_options=pacsv.ReadOptions(use_threads=False),
                parse_options=pacsv.ParseOptions(
                    newlines_in_values=True, invalid_row_handler=lambda _: "skip"
                ),
                convert_options=pacsv.ConvertOptions(
                    column_types=types,
                    timestamp_parsers=[_NO_TIMESTAMPS],
                    strings_can_be_null=True,
                    quoted_strings_can_be_null=False,
                    true_values=["true", "True", "TRUE"],
                    false_values=["false", "False", "FALSE"],
                ),
            )

        try:
            table = read({})
            as_text = {
                f.name: pa.string()
                for f in table.schema
                if pa.types.is_temporal(f.type) or pa.types.is_binary(f.type)
            }
            return read(as_text) if as_text else table
        except pa.ArrowInvalid as exc:
            raise InvalidInput(f"{str(path)!r} cannot be read as CSV: {exc}") from None

    def batches(self, size: int) -> Iterator[RawBatch]:
        for index, start in enumerate(range(0, self.total, size)):
            stop = min(start + size, self.total)
            yield RawBatch(
                index,
                self._lines[start],
                self._lines[stop - 1],
                stop - start,
                functools.partial(self._load, start, stop),
            )

    def _load(self, start: int, stop: int) -> Records:
        low = bisect.bisect_left(self._bad_indexes, start)
        high = bisect.bisect_left(self._bad_indexes, stop)
        bad_here = self._bad_indexes[low:high]
        first_good = start - low
        good = arrow_rows(self._table.slice(first_good, stop - start - len(bad_here)), self.columns)
        lines = list(self._lines[start:stop])
        if not bad_here:
            only_good: list[dict[str, Any] | None] = list(good)
            return Records(lines, only_good)
        rows: list[dict[str, Any] | None] = []
        problems: dict[int, tuple[str, Any]] = {}
        taken = 0
        for record in range(start, stop):
            if record in self._bad:
                problems[record - start] = self._bad[record]
                rows.append(None)
            else:
                rows.append(good[taken])
                taken += 1
        return Records(lines, rows, problems)


def _scan_plain(raw: bytes, path: Path) -> tuple[list[str], array[int], dict[int, tuple[str, Any]]]:
    """Without quotes a record is a line: split and count commas, no CSV parser needed."""
    lines: array[int] = array("q")
    bad: dict[int, tuple[str, Any]] = {}
    header: list[str] | None = None
    width = 0
    for number, text in enumerate(raw.split(b"\n"), start=1):
        if text.endswith(b"\r"):
            text = text[:-1]
        if not text:
            continue
        if header is None:
            header = text.decode().removeprefix("\ufeff").split(",")
            width = len(header) - 1
            continue
        commas = text.count(b",")
        if commas != width:
            bad[len(lines)] = (
                f"expected {width + 1} fields, found {commas + 1}",
                text.decode().split(","),
            )
        lines.append(number)
    if header is None:
        raise InvalidInput(f"{str(path)!r} is empty: expected a header row")
    return header, lines, bad


def _scan_quoted(path: Path) -> tuple[list[str], array[int], dict[int, tuple[str, Any]]]:
    """Record start lines and malformed records, with Python's csv module (quoted newlines)."""
    lines: array[int] = array("q")
    bad: dict[int, tuple[str, Any]] = {}
    header: list[str] | None = None
    end = 0
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            for record in reader:
                start, end = end + 1, reader.line_num
                if not record:
                    continue  # a blank line
                if header is None:
                    header = [record[0].removeprefix("\ufeff"), *record[1:]]
                    continue
                if len(record) != len(header):
                    bad[len(lines)] = (
                        f"expected {len(header)} fields, found {len(record)}",
                        record,
                    )
                lines.append(start)
    except csv.Error as exc:
        raise InvalidInput(f"{str(path)!r} line {end + 1}: {exc}") from None
    if header is None:
        raise InvalidInput(f"{str(path)!r} is empty: expected a header row")
    return header, lines, bad

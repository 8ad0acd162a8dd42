"""Reading CSV, JSON Lines and Parquet files as numbered records, in fixed-size batches.

A source cuts its file into batches of exactly ``size`` records (the last one shorter), the same
way on every run, so a batch index names the same rows every time. A batch is cheap to skip: its
rows are only decoded when :meth:`RawBatch.load` is called. Every record keeps its line number
(for Parquet, its row number); a record the reader cannot make into a row carries the reason.
"""

from __future__ import annotations

import bisect
import csv
import hashlib
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import msgspec

from facta.log import InvalidInput

Format = Literal["csv", "jsonl", "parquet"]
FORMATS: dict[str, Format] = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}


@dataclass(slots=True)
class Records:
    """The decoded records of one batch: a row per record, or ``None`` and a problem."""

    lines: list[int]
    rows: list[dict[str, Any] | None]
    problems: dict[int, tuple[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RawBatch:
    index: int
    first_line: int
    last_line: int
    size: int
    load: Callable[[], Records]


class Source(Protocol):
    format: Format
    columns: list[str]
    total: int

    def batches(self, size: int) -> Iterator[RawBatch]: ...


def detect_format(path: Path, given: str | None) -> Format:
    if given is not None:
        lowered = given.lower()
        if lowered in ("csv", "jsonl", "parquet"):
            return lowered  # type: ignore[return-value]
        raise InvalidInput(f"unknown format {given!r}: expected csv, jsonl or parquet")
    found = FORMATS.get(path.suffix.lower())
    if found is None:
        raise InvalidInput(
            f"cannot tell the format of {str(path)!r} from its extension {path.suffix!r}: "
            "expected .csv, .jsonl, .ndjson or .parquet (or pass --format)"
        )
    return found


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def open_source(path: Path, fmt: Format) -> Source:
    if not path.is_file():
        raise InvalidInput(f"import file {str(path)!r} does not exist or is not a file")
    if fmt == "csv":
        return CsvSource(path)
    if fmt == "jsonl":
        return JsonLinesSource(path)
    return ParquetSource(path)


def _unique(columns: Sequence[str], path: Path) -> list[str]:
    seen: set[str] = set()
    for name in columns:
        if name in seen:
            raise InvalidInput(f"{str(path)!r}: column names must be unique, found {name!r} twice")
        seen.add(name)
    return list(columns)


def _rows(table: Any, names: list[str]) -> list[dict[str, Any]]:
    """Arrow columns to row dicts: one ``to_pylist`` per column, then one zip per row."""
    columns = [column.to_pylist() for column in table.columns]
    return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]


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
        self.columns = _unique(header, path)
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
                lambda start=start, stop=stop: self._load(start, stop),  # type: ignore[misc]
            )

    def _load(self, start: int, stop: int) -> Records:
        low = bisect.bisect_left(self._bad_indexes, start)
        high = bisect.bisect_left(self._bad_indexes, stop)
        bad_here = self._bad_indexes[low:high]
        first_good = start - low
        good = _rows(self._table.slice(first_good, stop - start - len(bad_here)), self.columns)
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


class JsonLinesSource:
    """One JSON object per line; blank lines are skipped but counted. Values stay as parsed."""

    format: Format = "jsonl"

    def __init__(self, path: Path) -> None:
        self.path = path
        total = 0
        first: Any = None
        with open(path, "rb") as handle:
            for line in handle:
                if line.strip():
                    total += 1
                    if first is None:
                        try:
                            decoded = msgspec.json.decode(line)
                        except msgspec.DecodeError:
                            continue
                        if isinstance(decoded, dict):
                            first = decoded
        self.total = total
        self.columns = list(first) if isinstance(first, dict) else []

    def batches(self, size: int) -> Iterator[RawBatch]:
        chunk: list[tuple[int, bytes]] = []
        index = 0
        with open(self.path, "rb") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                chunk.append((number, line))
                if len(chunk) == size:
                    yield self._batch(index, chunk)
                    index += 1
                    chunk = []
        if chunk:
            yield self._batch(index, chunk)

    @staticmethod
    def _batch(index: int, chunk: list[tuple[int, bytes]]) -> RawBatch:
        return RawBatch(index, chunk[0][0], chunk[-1][0], len(chunk), lambda: _decode_lines(chunk))


_decoder = msgspec.json.Decoder()


def _decode_lines(chunk: list[tuple[int, bytes]]) -> Records:
    lines = [number for number, _ in chunk]
    rows: list[dict[str, Any] | None] = []
    problems: dict[int, tuple[str, Any]] = {}
    decode = _decoder.decode
    for position, (_, raw) in enumerate(chunk):
        try:
            value = decode(raw)
        except msgspec.DecodeError as exc:
            problems[position] = (f"invalid JSON: {exc}", raw.decode("utf-8", "replace").rstrip())
            rows.append(None)
            continue
        if type(value) is not dict:
            problems[position] = (
                f"expected a JSON object, found {type(value).__name__}",
                value,
            )
            rows.append(None)
            continue
        rows.append(value)
    return Records(lines, rows, problems)


class ParquetSource:
    """A Parquet file read in record batches; ``line`` is the 1-based row number."""

    format: Format = "parquet"

    def __init__(self, path: Path) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.path = path
        try:
            self._file = pq.ParquetFile(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InvalidInput(f"{str(path)!r} cannot be read as Parquet: {exc}") from None
        self.columns = _unique(self._file.schema_arrow.names, path)
        self.total = int(self._file.metadata.num_rows)

    def batches(self, size: int) -> Iterator[RawBatch]:
        import pyarrow as pa

        pending: list[Any] = []
        held = 0
        start = 0
        index = 0
        for record_batch in self._file.iter_batches(batch_size=size):
            pending.append(record_batch)
            held += record_batch.num_rows
            while held >= size:
                table = pa.Table.from_batches(pending)
                yield self._batch(index, start, table.slice(0, size))
                rest = table.slice(size)
                pending = rest.to_batches() if rest.num_rows else []
                held -= size
                start += size
                index += 1
        if held:
            yield self._batch(index, start, pa.Table.from_batches(pending))

    def _batch(self, index: int, start: int, table: Any) -> RawBatch:
        count = int(table.num_rows)
        first = start + 1
        return RawBatch(
            index,
            first,
            start + count,
            count,
            lambda: Records(list(range(first, first + count)), list(_rows(table, self.columns))),
        )


def default_rejects_path(path: Path) -> Path:
    return path.with_name(path.name + ".rejects.jsonl")


__all__ = [
    "FORMATS",
    "Format",
    "RawBatch",
    "Records",
    "Source",
    "default_rejects_path",
    "detect_format",
    "file_sha256",
    "open_source",
]

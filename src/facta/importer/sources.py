"""The formats an import reads (CSV, JSON Lines, Parquet), and the file's content hash."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

from facta.importer.csv_source import CsvSource
from facta.importer.records import (
    Format,
    RawBatch,
    Records,
    Source,
    arrow_rows,
    unique_columns,
)
from facta.log import InvalidInput

FORMATS: dict[str, Format] = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}


def detect_format(path: Path, given: str | None) -> Format:
    if given is not None:
        named: dict[str, Format] = {"csv": "csv", "jsonl": "jsonl", "parquet": "parquet"}
        if given.lower() in named:
            return named[given.lower()]
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


class JsonLinesSource:
    """One JSON object per line; blank lines are skipped but counted. Values stay as parsed."""

    format: Format = "jsonl"

    def __init__(self, path: Path) -> None:
        self.path = path
        total = 0
        first: Any = None
        with open(path, "rb") as handle:
            for number, line in enumerate(handle, start=1):
                if number == 1:
                    line = line.removeprefix(_BOM)
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
                if number == 1:
                    line = line.removeprefix(_BOM)
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
        load = functools.partial(_decode_lines, chunk)
        return RawBatch(index, chunk[0][0], chunk[-1][0], len(chunk), load)


_decoder = msgspec.json.Decoder()
_BOM = b"\xef\xbb\xbf"


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
        self.columns = unique_columns(self._file.schema_arrow.names, path)
        self.total = int(self._file.metadata.num_rows)

    def batches(self, size: int) -> Iterator[RawBatch]:
        import pyarrow as pa

        pending: list[Any] = []
        held = 0
        start = 0
        index = 0
        # One thread: a parquet worker thread left behind can abort the interpreter at exit.
        for record_batch in self._file.iter_batches(batch_size=size, use_threads=False):
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
            functools.partial(_numbered, first, table, self.columns),
        )


def _numbered(first: int, table: Any, columns: list[str]) -> Records:
    rows: list[dict[str, Any] | None] = list(arrow_rows(table, columns))
    return Records(list(range(first, first + len(rows))), rows)


def default_rejects_path(path: Path) -> Path:
    return path.with_name(path.name + ".rejects.jsonl")

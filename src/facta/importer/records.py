"""What a source hands the importer: batches of numbered records, decoded on demand.

A source cuts its file into batches of exactly ``size`` records (the last one shorter), the same
way on every run, so a batch index names the same rows every time. A batch is cheap to skip: its
rows are only decoded when :meth:`RawBatch.load` is called. Every record keeps its line number
(for Parquet, its row number); a record the reader cannot make into a row carries the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from facta.log import InvalidInput

Format = Literal["csv", "jsonl", "parquet"]


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


def unique_columns(columns: Sequence[str], path: Path) -> list[str]:
    seen: set[str] = set()
    for name in columns:
        if name in seen:
            raise InvalidInput(f"{str(path)!r}: column names must be unique, found {name!r} twice")
        seen.add(name)
    return list(columns)


def arrow_rows(table: Any, names: list[str]) -> list[dict[str, Any]]:
    """Arrow columns to row dicts: one ``to_pylist`` per column, then one zip per row."""
    columns = [column.to_pylist() for column in table.columns]
    return [dict(zip(names, values)) for values in zip(*columns)]  # noqa: B905 - equal by construction

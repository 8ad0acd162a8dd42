"""A cheap evaluator for small pages: the same result as the DuckDB pipeline, without DuckDB.

A live view that is caught up sees a few dozen events at a time. DuckDB then costs more in
binding and preparing its query (several milliseconds) than in running it, and that is most of
the delay between an append and the view showing it. For small pages of a *plain* view — no
filter, no extraction, no enrichment, only text, number and boolean fields, an ISO-8601 bucket
field or none — this module parses each event's JSON in Python and applies the very rules the
DuckDB query applies: strict types (a wrong JSON type is a rejected value, the event goes on),
ISO-8601 times that must carry an offset, calendar buckets in the view's time zone. Each
document is decoded straight into the declared types by msgspec; only a document holding a value
of another type is read again value by value, to tell which values to count as rejected.

Anything outside the narrow forms it knows (an unusual time spelling, a number msgspec cannot
read) makes it decline the page, which then goes through DuckDB: the two paths never disagree,
and a property test compares them on generated events.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Annotated, Any, Final

import msgspec
import numpy as np
import pyarrow as pa
from msgspec.structs import astuple

from facta.views import calendar
from facta.views.compile import CompiledView
from facta.views.parsing import ISO_WITH_OFFSET
from facta.views.pipeline import BUCKET, Evaluated, kept_columns

SMALL_FIELD_TYPES: Final = frozenset({"string", "double", "bigint", "boolean"})
_BUILTINS: Final = {
    "_position": "position",
    "_stream": "stream",
    "_type": "type",
    "_version": "version",
}
_INT64: Final = (-(2**63), 2**63 - 1)
# The one spelling of a time this path reads itself; any other valid one goes to DuckDB.
_SIMPLE_TIME: Final = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(Z|[+-]\d{2}:\d{2})", re.ASCII
)
_ANY_TIME: Final = re.compile(ISO_WITH_OFFSET, re.ASCII)
_ARROW: Final = {
    "string": pa.string(),
    "double": pa.float64(),
    "bigint": pa.int64(),
    "boolean": pa.bool_(),
}
_decode = msgspec.json.Decoder().decode
# The Python type a declared field decodes to when it has the declared type.
_PYTHON: Final[dict[str, Any]] = {
    "string": str,
    "double": float,
    "bigint": Annotated[int, msgspec.Meta(ge=_INT64[0], le=_INT64[1])],
    "boolean": bool,
}


class Declined(Exception):
    """The page holds something only DuckDB reads exactly as the pipeline does."""


def handles(view: CompiledView) -> bool:
    """Whether small pages of ``view`` may skip DuckDB."""
    definition = view.definition
    if definition.enrich or definition.filter is not None or definition.extract:
        return False
    if any(declared not in SMALL_FIELD_TYPES for declared in definition.fields.values()):
        return False
    bucket = definition.bucket
    if bucket is not None and (
        bucket.format != "iso" or definition.fields.get(bucket.field) != "string"
    ):
        return False
    return all(name in definition.fields or name in _BUILTINS for name in kept_columns(view))


def _typed(value: Any, declared: str) -> tuple[Any, bool]:
    """A JSON value as the declared type: (value or None, whether it was a rejected value)."""
    if value is None:
        return None, False
    if declared == "string":
        return (value, False) if isinstance(value, str) else (None, True)
    if declared == "boolean":
        return (value, False) if isinstance(value, bool) else (None, True)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None, True
    if declared == "double":
        number = float(value)
        if not math.isfinite(number):
            raise Declined("a non-finite number")
        return number, False
    if isinstance(value, float) or not _INT64[0] <= value <= _INT64[1]:
        return None, True
    return value, False


def _bucket(text: Any, width: str, zone: str) -> int | None:
    """The bucket start of an ISO-8601 time with an offset, None if it is no such time."""
    if not isinstance(text, str):
        return None
    return _text_bucket(text, width, zone)


# Successive live pages mostly repeat the times of the pages before (hourly data): each
# spelling is parsed and floored once for many pages. (A Declined is not remembered.)
@functools.lru_cache(maxsize=4096)
def _text_bucket(text: str, width: str, zone: str) -> int | None:
    if not _ANY_TIME.fullmatch(text):
        return None
    if not _SIMPLE_TIME.fullmatch(text):
        raise Declined(f"time spelling {text!r}")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise Declined(f"time {text!r}") from None
    return calendar.floor(math.floor(moment.timestamp()), width, zone)


@functools.cache
def _row_decoder_of(fields: tuple[tuple[str, str], ...]) -> Callable[[str], Any]:
    row = msgspec.defstruct(
        "SmallPageRow",
        [(f"f{i}", _PYTHON[declared] | None, None) for i, (_, declared) in enumerate(fields)],
        rename={f"f{i}": name for i, (name, _) in enumerate(fields)},
    )
    return msgspec.json.Decoder(row).decode


def _row_decoder(fields: Mapping[str, str]) -> Callable[[str], Any]:
    """Decodes one document into the declared fields, strictly: a value of another type
    (a float for a bigint, a number for a string, a number JSON cannot hold as a finite
    double), or a document that is no object, raises ``msgspec.ValidationError``."""
    return _row_decoder_of(tuple(fields.items()))


def _typed_row(
    text: str, fields: Mapping[str, str], position: int, bad: dict[str, list[int]]
) -> tuple[Any, ...]:
    """One document's declared fields, each value of the wrong type noted in ``bad``."""
    try:
        document = _decode(text)
    except (msgspec.DecodeError, ValueError, OverflowError):
        raise Declined("a document msgspec cannot read") from None
    if not isinstance(document, dict):
        raise Declined("a document that is not an object")
    found = []
    for name, declared in fields.items():
        value, rejected = _typed(document.get(name), declared)
        found.append(value)
        if rejected:
            bad.setdefault(name, []).append(position)
    return tuple(found)


def evaluate_small(view: CompiledView, page: pa.Table) -> Evaluated:
    """Evaluate a page without DuckDB (raises :class:`Declined` for what it cannot read)."""
    definition = view.definition
    fields = definition.fields
    bucket = definition.bucket
    positions = page.column("position").to_pylist()
    decode_row = _row_decoder(fields)
    rows: list[tuple[Any, ...]] = []
    bad: dict[str, list[int]] = {}
    for position, text in zip(positions, page.column("data").to_pylist(), strict=True):
        try:
            rows.append(astuple(decode_row(text)))
        except msgspec.ValidationError:
            # A value of another type than declared (or no object at all): the long way.
            rows.append(_typed_row(text, fields, position, bad))
        except (msgspec.DecodeError, ValueError, OverflowError):
            raise Declined("a document msgspec cannot read") from None
    columns_of_rows = list(zip(*rows, strict=True)) if rows else [() for _ in fields]
    values: dict[str, list[Any]] = {
        name: list(column) for name, column in zip(fields, columns_of_rows, strict=True)
    }
    starts: list[int | None] = [0] * len(positions)
    rejected_events: list[int] = []
    if bucket is not None:
        # Events of a page often share a time (hourly data): each spelling is read once.
        known: dict[Any, int | None] = {}
        for text in values[bucket.field]:
            if text not in known:
                known[text] = _bucket(text, bucket.width, bucket.timezone)
        starts = [known[t] for t in values[bucket.field]]
        rejected_events = [p for p, s in zip(positions, starts, strict=True) if s is None]
    keep = [s is not None for s in starts]
    columns: dict[str, pa.Array] = {
        "_position": pa.array(positions, pa.int64()),
        BUCKET: pa.array(starts if bucket is not None else [None] * len(starts), pa.int64()),
    }
    for name in kept_columns(view)[1:]:
        if name in _BUILTINS:
            columns[name] = page.column(_BUILTINS[name]).combine_chunks()
        else:
            columns[name] = pa.array(values[name], _ARROW[fields[name]])
    table = pa.table(columns)
    if rejected_events:  # only a row whose bucket is unreadable is left out
        table = table.filter(pa.array(keep, pa.bool_()))
    return Evaluated(
        table,
        {name: np.asarray(found, dtype=np.int64) for name, found in bad.items()},
        np.asarray(rejected_events, dtype=np.int64),
        {},
    )

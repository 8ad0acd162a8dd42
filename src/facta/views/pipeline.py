"""One page of events through DuckDB: strict field parsing, filter, extraction, event-time buckets.

Parsing is strict. A field declared ``double`` accepts JSON numbers only; ``"12"`` (a string) is
not silently turned into NULL or 12 — it is counted as a rejected value of that field, with its
position, and the event goes on with the field absent. An event that passes the filter but has no
usable bucket time is a rejected event: it is never bucketed by the time it was recorded.
"""

from __future__ import annotations

import dataclasses
from typing import Final

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from facta.views.arrow_parsing import ArrowFieldParser, parsed_column
from facta.views.batch import Bools, Ints
from facta.views.compile import CompiledView
from facta.views.expressions import evaluator
from facta.views.parsing import (
    field_sql,
    fragments_sql,
    iso_time_sql,
)
from facta.views.references import ReferenceTable

_TRUNC: Final = {"1h": "hour", "1d": "day", "1w": "week", "1mo": "month"}
_EPOCH_TO_US: Final = {"s": 1_000_000, "ms": 1_000, "us": 1}
KEEP: Final = "__keep"
BUCKET: Final = "__bucket"


@dataclasses.dataclass(frozen=True, slots=True)
class Evaluated:
    """A page after DuckDB: the kept rows (positions, dimensions, bucket, measure inputs)."""

    rows: pa.Table
    rejected_values: dict[str, Ints]
    rejected_events: Ints
    unmatched: dict[str, int] = dataclasses.field(default_factory=dict)


def _enrich_sql(view: CompiledView) -> tuple[list[str], str]:
    """Extra items for the typed rows (as-of times) and the enriched CTE joining every table."""
    definition = view.definition
    times: list[str] = []
    columns: list[str] = []
    joins: list[str] = []
    for alias, join in definition.enrich.items():
        table = definition.tables[join.table]
        other = f'"__ref_{alias}"'
        match = [f'{other}."{key}" = typed."{field}"' for key, field in join.on.items()]
        if join.asof is not None:
            raw = f"json_extract_string(_data, '$.\"{join.asof}\"')"
            times.append(f'{iso_time_sql(raw)} AS "__asof_{alias}"')
            match.append(f'typed."__asof_{alias}" >= {other}."__time"')
            kind = "ASOF LEFT JOIN"
        else:
            kind = "LEFT JOIN"
        joins.append(f'{kind} "ref_{join.table}" AS {other} ON {" AND ".join(match)}')
        columns += [f'{other}."{f}" AS "{alias}_{f}"' for f in table.value_fields()]
        columns.append(f'({other}."__position" IS NULL) AS "__miss_{alias}"')
    if not joins:
        return times, "enriched AS (SELECT * FROM typed)"
    body = f"SELECT typed.*, {', '.join(columns)} FROM typed {' '.join(joins)}"
    return times, f"enriched AS ({body})"


def build_sql(view: CompiledView, *, parsed: bool = False) -> str:
    """The one query that turns a page of raw events into typed, filtered, bucketed rows.

    With ``parsed``, the page also holds every declared field already typed by Arrow
    (``arrow_parsing``, columns named by :func:`parsed_column`), none of them of a wrong
    kind: the query takes them as they are instead of parsing the documents."""
    definition = view.definition
    typed_parts = []
    bad_parts = []
    for index, (name, declared) in enumerate(definition.fields.items()):
        if parsed:
            typed, bad = f'"{parsed_column(index)}" AS "{name}"', f'false AS "__bad_{name}"'
        else:
            typed, bad = field_sql(name, declared, index)
        typed_parts.append(typed)
        bad_parts.append(bad)
    values = "".join(f', "{parsed_column(i)}"' for i in range(len(definition.fields)))
    fragments = (
        "SELECT * FROM src" if parsed else f"SELECT *, {fragments_sql(definition.fields)} FROM src"
    )
    times, enriched = _enrich_sql(view)
    extracts = [f'{sql} AS "{name}"' for name, sql in view.extract_sql.items()]
    keep = f"coalesce(({view.filter_sql}), false)" if view.filter_sql else "true"
    bucket = definition.bucket
    if bucket is None:
        bucket_item = f"NULL::BIGINT AS {BUCKET}, "
    elif buckets_by_value(view):
        bucket_item = ""  # computed per distinct value of the field (see Pipeline._buckets)
    else:
        quoted = f'"{bucket.field}"'
        bucket_item = f"{bucket_sql(view, quoted)} AS {BUCKET}, "
    return f"""
WITH src AS (
    SELECT position AS _position, stream AS _stream, type AS _type, version AS _version,
           CAST(recorded_at AS TIMESTAMPTZ) AS _recorded_at,
           CAST(coalesce(metadata, '{{}}') AS JSON) AS _metadata,
           data AS _data{values if parsed else ""}
    FROM page
), fragments AS (
    {fragments}
), typed AS (
    SELECT _position, _stream, _type, _version, _recorded_at, _metadata
           {"".join(", " + p for p in typed_parts + bad_parts + times)}
    FROM fragments
), {enriched}, extracted AS (
    SELECT *{"".join(", " + p for p in extracts)}, {keep} AS {KEEP} FROM enriched
)
SELECT {bucket_item}{", ".join(output_columns(view))}
FROM extracted{" ORDER BY _position" if definition.enrich else ""}
"""


def buckets_by_value(view: CompiledView) -> bool:
    """Whether the bucket is computed once per distinct value of its field rather than per row:
    ISO-8601 text (checking its form and converting it between time zones is most of a
    page's bucketing cost, and a page holds a few thousand distinct times at most)."""
    bucket = view.definition.bucket
    return bucket is not None and bucket.format != "epoch" and view.kinds[bucket.field] != "time"


def bucket_sql(view: CompiledView, field: str) -> str:
    """The start (epoch seconds) of the bucket of ``field``'s value, NULL when it has no usable
    time; calendar-aligned in the bucket's time zone."""
    bucket = view.definition.bucket
    assert bucket is not None
    if bucket.format == "epoch":
        factor = _EPOCH_TO_US[bucket.unit or "s"]
        moment = f"timezone('UTC', make_timestamp(CAST(round({field} * {factor}) AS BIGINT)))"
    elif view.kinds[bucket.field] == "time":
        moment = f"CAST({field} AS TIMESTAMPTZ)"
    else:
        moment = iso_time_sql(field)
    zone = bucket.timezone.replace("'", "''")
    unit = _TRUNC[bucket.width]
    return (
        f"CAST(epoch(timezone('{zone}', date_trunc('{unit}', timezone('{zone}', {moment}))))"
        " AS BIGINT)"
    )


def kept_columns(view: CompiledView) -> list[str]:
    """The columns measures and grouping need from each kept row."""
    wanted = ["_position", *view.definition.dimensions]
    wanted += [f for f in view.measure_fields() if f not in wanted]
    return wanted


def output_columns(view: CompiledView) -> list[str]:
    """What the query returns: kept columns, the filter result, reject and miss flags."""
    definition = view.definition
    columns = [f'"{name}"' for name in kept_columns(view)]
    columns.append(KEEP)
    columns += [f'"__bad_{name}"' for name in definition.fields]
    columns += [f'"__miss_{alias}"' for alias in definition.enrich]
    if definition.bucket is not None and definition.bucket.field not in kept_columns(view):
        columns.append(f'"{definition.bucket.field}"')
    return columns


# Builtins a view may use as they come from the log, renamed only.
_PLAIN_BUILTINS: Final = {"_position": "position", "_stream": "stream", "_type": "type"}


def _plain_columns(view: CompiledView) -> dict[str, str] | None:
    """For a view whose query only renames and types (no filter, extraction, enrichment or
    bucket computed per row), the page column behind each builtin it outputs; else None."""
    definition = view.definition
    if view.filter_sql or view.extract_sql or definition.enrich:
        return None
    if definition.bucket is not None and not buckets_by_value(view):
        return None
    plain: dict[str, str] = {}
    for name in kept_columns(view):
        if name in _PLAIN_BUILTINS:
            plain[name] = _PLAIN_BUILTINS[name]
        elif name not in definition.fields:
            return None
    return plain


class Pipeline:
    """Evaluates pages of one view; holds one DuckDB connection and the view's query."""

    def __init__(
        self, view: CompiledView, log_path: str | None = None, *, arrow_parsing: bool = True
    ) -> None:
        self.view = view
        self._sql = build_sql(view)
        fields = view.definition.fields
        self._arrow: ArrowFieldParser | None = None
        if arrow_parsing and fields and ArrowFieldParser.handles(fields):
            self._arrow = ArrowFieldParser(fields)
            self._parsed_sql = build_sql(view, parsed=True)
        self._plain = _plain_columns(view) if self._arrow is not None else None
        # Pages whose fields Arrow typed, and pages the strict SQL parsed.
        self.pages_parsed_by_arrow = 0
        self.pages_parsed_by_sql = 0
        self._conn = evaluator()
        self._values_sql: str | None = None
        if buckets_by_value(view):
            # The distinct texts go in as one list parameter and come back as one list: no
            # Arrow table for DuckDB to scan (its scan takes the GIL from its own threads, a
            # wait each time while another thread folds: 14 ms a page against 6).
            self._values_sql = (
                f"SELECT list_transform($1::VARCHAR[], lambda v: {bucket_sql(view, 'v')})"
            )
        self.tables: dict[str, ReferenceTable] = {}
        used = {join.table for join in view.definition.enrich.values()}
        if used and log_path is None:
            raise ValueError(f"view {view.name!r} enriches from tables: the pipeline needs the log")
        for name in sorted(used):
            table = view.definition.tables[name]
            self.tables[name] = ReferenceTable(self._conn, name, table, log_path or "")

    def prime(self, checkpoint: int) -> None:
        """Bring every reference table to its state at ``checkpoint`` (after a restart)."""
        for table in self.tables.values():
            table.fetch(checkpoint)
            table.apply_before(checkpoint + 1)

    def _run(self, page: pa.Table, sql: str) -> tuple[pa.Table, Ints]:
        """Evaluate a page with ``sql``; rows whose expressions raise are split off and
        returned apart.

        An expression that fails on one event (a CAST of bad text) must not stall the view: the
        page is halved until the failing events stand alone, and those become rejected events.
        """
        try:
            return self._query(page, sql), np.zeros(0, np.int64)
        except duckdb.Error:
            if page.num_rows <= 1:
                failed = np.asarray(page.column("position").to_numpy(), dtype=np.int64)
                return self._query(page.slice(0, 0), sql), failed
        middle = page.num_rows // 2
        first, first_failed = self._run(page.slice(0, middle), sql)
        second, second_failed = self._run(page.slice(middle), sql)
        return pa.concat_tables([first, second]), np.concatenate([first_failed, second_failed])

    def _query(self, page: pa.Table, sql: str) -> pa.Table:
        self._conn.register("page", page)
        try:
            return self._conn.sql(sql).to_arrow_table()
        finally:
            self._conn.unregister("page")

    def _typed(self, page: pa.Table, parsed: list[pa.Array], plain: dict[str, str]) -> Evaluated:
        """A page of a view without expressions, from Arrow's typed fields: what the query
        would give (every row passes, no value is rejected), without a DuckDB query over the
        page. DuckDB would only copy the strings in and out, and its scan of an Arrow table
        takes the GIL from its own threads: 9 ms of a 50,000-event page's 50 alone, more while
        another thread folds."""
        definition = self.view.definition
        values = dict(zip(definition.fields, parsed, strict=True))
        positions = page.column("position")
        columns: dict[str, pa.Array | pa.ChunkedArray] = {"_position": positions}
        rejected_events = np.zeros(0, dtype=np.int64)
        missing: Bools | None = None
        if definition.bucket is None:
            columns[BUCKET] = pa.nulls(page.num_rows, pa.int64())
        else:
            starts = self._buckets(values[definition.bucket.field])
            columns[BUCKET] = starts
            if starts.null_count:
                missing = starts.is_null().to_numpy(zero_copy_only=False)
                rejected_events = positions.to_numpy()[missing].astype(np.int64)
        for name in kept_columns(self.view)[1:]:
            columns[name] = page.column(plain[name]) if name in plain else values[name]
        rows = pa.table(columns)
        if missing is not None:
            rows = rows.filter(pa.array(~missing))
        return Evaluated(rows, {}, rejected_events)

    @staticmethod
    def texts_encoded(evaluated: Evaluated) -> Evaluated:
        """The same rows with every text column dictionary-encoded, as grouping and the
        sketches would encode them anyway: work a page thread can take over from the folding
        thread when it has time to spare (see ``PagesAhead``)."""
        rows = evaluated.rows
        for index, field in enumerate(rows.schema):
            if field.type == pa.string():
                rows = rows.set_column(index, field.name, pc.dictionary_encode(rows.column(index)))
        return dataclasses.replace(evaluated, rows=rows)

    def evaluate(self, page: pa.Table) -> Evaluated:
        """Evaluate a page; with reference tables, in runs split at their events' positions."""
        if not self.tables or page.num_rows == 0:
            return self._evaluate(page)
        positions = page.column("position").to_numpy()
        cuts = [np.zeros(0, dtype=np.int64)]
        for table in self.tables.values():
            cuts.append(table.fetch(int(positions[-1])))
        inside = np.unique(np.concatenate(cuts))
        inside = inside[(inside > positions[0]) & (inside < positions[-1])]
        starts = np.concatenate(([0], np.searchsorted(positions, inside, side="left")))
        bounds = np.unique(np.concatenate((starts, [positions.size])))
        parts = []
        for begin, end in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
            for table in self.tables.values():
                table.apply_before(int(positions[begin]))
            parts.append(self._evaluate(page.slice(begin, end - begin)))
        unmatched: dict[str, int] = {}
        for part in parts:
            for name, count in part.unmatched.items():
                unmatched[name] = unmatched.get(name, 0) + count
        return Evaluated(
            pa.concat_tables([p.rows for p in parts]),
            {
                field: np.concatenate(
                    [p.rejected_values[field] for p in parts if field in p.rejected_values]
                )
                for field in {f for p in parts for f in p.rejected_values}
            },
            np.concatenate([p.rejected_events for p in parts]),
            unmatched,
        )

    def _buckets(self, column: pa.ChunkedArray | pa.Array) -> pa.Array:
        """Each row's bucket start, computed once per distinct value of the bucket field."""
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        encoded = pc.dictionary_encode(column)
        texts = encoded.dictionary.to_pylist()
        ((found,),) = self._conn.execute(str(self._values_sql), [texts]).fetchall()
        starts = pa.array(found, pa.int64())
        return starts.take(encoded.indices)

    def _evaluate(self, page: pa.Table) -> Evaluated:
        # Arrow types the fields once; a page it refuses goes to the strict SQL, which says
        # which values are wrong. The typed columns ride along in the page, so the halves of
        # a page split by a failing expression (``_run``) are not parsed again.
        parsed = self._arrow.parse(page.column("data")) if self._arrow is not None else None
        if parsed is None:
            self.pages_parsed_by_sql += 1
            result, failed = self._run(page, self._sql)
        elif self._plain is not None:
            self.pages_parsed_by_arrow += 1
            return self._typed(page, parsed, self._plain)
        else:
            self.pages_parsed_by_arrow += 1
            for index, values in enumerate(parsed):
                page = page.append_column(parsed_column(index), values)
            result, failed = self._run(page, self._parsed_sql)
        bucket = self.view.definition.bucket
        if self._values_sql is not None and bucket is not None:
            result = result.append_column(BUCKET, self._buckets(result.column(bucket.field)))
        positions = result.column("_position").to_numpy()
        rejected_values: dict[str, Ints] = {}
        for name in self.view.definition.fields:
            bad = result.column(f"__bad_{name}").to_numpy(zero_copy_only=False)
            if bad.any():
                rejected_values[name] = positions[bad].astype(np.int64)
        keep = result.column(KEEP).to_numpy(zero_copy_only=False).astype(np.bool_)
        rejected_events = np.zeros(0, dtype=np.int64)
        if self.view.definition.bucket is not None:
            missing = pc.is_null(result.column(BUCKET)).to_numpy(zero_copy_only=False)
            rejected_events = positions[keep & missing].astype(np.int64)
            keep &= ~missing
        if failed.size:
            rejected_events = np.sort(np.concatenate([rejected_events, failed]))
        wanted = ["_position", BUCKET, *kept_columns(self.view)[1:]]
        rows = result.select(wanted)
        if not keep.all():  # most pages keep every row: no copy then
            rows = rows.filter(pa.array(keep))
        unmatched: dict[str, int] = {}
        for alias, join in self.view.definition.enrich.items():
            missed = result.column(f"__miss_{alias}").to_numpy(zero_copy_only=False)
            count = int((missed.astype(np.bool_) & keep).sum())
            unmatched[join.table] = unmatched.get(join.table, 0) + count
        return Evaluated(rows, rejected_values, rejected_events, unmatched)

    def close(self) -> None:
        for table in self.tables.values():
            table.close()
        self._conn.close()

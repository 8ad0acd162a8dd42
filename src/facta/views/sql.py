"""``facta sql``: read-only DuckDB over the views, in a sandbox.

Each view is a table with its dimensions, ``bucket``, ``changed_at``, finalized measure columns
*and* mergeable columns — ``<m>__n``, ``<m>__mean``, ``<m>__m2``, co-moments, sums, and sketch
blobs ``<m>__kll``, ``<m>__fi``, ``<m>__hll`` — so coarser groups can be computed correctly:

    SELECT carrier, kll_merge_quantile(list(delay_q__kll), 0.5) AS median
    FROM delays GROUP BY carrier

Never average medians or means of groups: merge their states. The query runs on a fresh
connection with external access off, extension auto-install/auto-load off, memory and thread
limits, locked configuration, one SELECT statement only, a row cap and a time limit.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from typing import Any

import datasketches as ds
import duckdb
import pyarrow as pa

from facta.views.measures import (
    CoMoments,
    Count,
    Distinct,
    Measure,
    Moments,
    Quantiles,
    Sum,
    TopK,
)
from facta.views.query import ViewSnapshot, open_snapshot
from facta.views.store import ViewStore


class SqlRefused(ValueError):
    """A statement facta will not run: not one SELECT, or it broke a sandbox limit."""


class SqlTimeout(TimeoutError):
    pass


def mergeable_columns(measure: Measure, state: Any) -> dict[str, Any]:
    """The state of one measure as plain columns (numbers or sketch bytes)."""
    name = measure.name
    if isinstance(measure, Count):
        return {}
    if isinstance(measure, Sum):
        return {f"{name}__n": state.n, f"{name}__sum": state.value()}
    if isinstance(measure, Moments):
        return {f"{name}__n": state.n, f"{name}__mean": state.mean, f"{name}__m2": state.m2}
    if isinstance(measure, CoMoments):
        return {
            f"{name}__n": state.n,
            f"{name}__mean_x": state.mean_x,
            f"{name}__mean_y": state.mean_y,
            f"{name}__m2_x": state.m2_x,
            f"{name}__m2_y": state.m2_y,
            f"{name}__c": state.c,
        }
    if isinstance(measure, Quantiles):
        return {f"{name}__kll": state.sketch_bytes() or None}
    if isinstance(measure, TopK):
        return {f"{name}__fi": state.sketch_bytes() or None}
    if isinstance(measure, Distinct):
        return {f"{name}__hll": state.sketch_bytes() or None}
    return {}


def view_table(snapshot: ViewSnapshot) -> pa.Table:
    """Every cell of a view as one row: finalized and mergeable columns."""
    merged = snapshot.merge(by_bucket=True)
    finalized = snapshot.table(merged, snapshot.dimensions, bucket=True)
    extra: dict[str, list[Any]] = {}
    for key in merged:
        for measure, state in zip(snapshot.view.measures, merged[key].states, strict=True):
            for column, value in mergeable_columns(measure, state).items():
                extra.setdefault(column, []).append(value)
    for column, values in extra.items():
        kind = pa.binary() if column.endswith(("__kll", "__fi", "__hll")) else None
        finalized = finalized.append_column(column, pa.array(values, type=kind))
    if snapshot.view.definition.bucket is None:
        finalized = finalized.drop_columns(["bucket"])
    return finalized


def _kll_merge_quantile(blobs: list[bytes | None] | None, rank: float) -> float | None:
    merged = None
    for blob in blobs or []:
        if blob:
            sketch = ds.kll_doubles_sketch.deserialize(blob)
            if merged is None:
                merged = sketch
            else:
                merged.merge(sketch)
    if merged is None or merged.is_empty():
        return None
    return float(merged.get_quantile(rank))


def _hll_merge(blobs: list[bytes | None] | None) -> float | None:
    union = None
    for blob in blobs or []:
        if blob:
            sketch = ds.hll_sketch.deserialize(blob)
            if union is None:
                union = ds.hll_union(sketch.lg_config_k)
            union.update(sketch)
    return None if union is None else float(union.get_estimate())


def _fi_merge_top(blobs: list[bytes | None] | None, k: int) -> str:
    merged = None
    for blob in blobs or []:
        if blob:
            sketch = ds.frequent_strings_sketch.deserialize(blob)
            if merged is None:
                merged = sketch
            else:
                merged.merge(sketch)
    if merged is None:
        return "[]"
    rows = merged.get_frequent_items(ds.frequent_items_error_type.NO_FALSE_NEGATIVES)
    items = sorted(rows, key=lambda r: (-r[1], r[0]))[:k]
    return json.dumps(
        [{"item": r[0], "estimate": r[1], "lower": r[2], "upper": r[3]} for r in items]
    )


def _sandbox(memory_limit: str, threads: int) -> duckdb.DuckDBPyConnection:
    conn = duckdb.connect(":memory:")
    conn.execute("SET TimeZone = 'UTC'")
    conn.execute("SET autoinstall_known_extensions = false")
    conn.execute("SET autoload_known_extensions = false")
    conn.execute(f"SET memory_limit = '{memory_limit}'")
    conn.execute(f"SET threads = {int(threads)}")
    blob_list = duckdb.sqltype("BLOB[]")
    double = duckdb.sqltype("DOUBLE")
    # "special" null handling: the functions see NULL lists and NULL blobs themselves.
    special: Any = "special"
    conn.create_function(
        "kll_merge_quantile",
        _kll_merge_quantile,
        [blob_list, double],
        double,
        null_handling=special,
    )
    conn.create_function("hll_merge", _hll_merge, [blob_list], double, null_handling=special)
    text, bigint = duckdb.sqltype("VARCHAR"), duckdb.sqltype("BIGINT")
    conn.create_function(
        "fi_merge_top", _fi_merge_top, [blob_list, bigint], text, null_handling=special
    )
    return conn


def run_sql(
    store: ViewStore,
    statement: str,
    *,
    views: Sequence[str] | None = None,
    row_cap: int = 10_000,
    time_limit: float = 10.0,
    memory_limit: str = "512MB",
    threads: int = 2,
) -> pa.Table:
    """Run one SELECT over the views (all, or those named) and return at most ``row_cap`` rows."""
    conn = _sandbox(memory_limit, threads)
    try:
        rows = conn.execute("SELECT json_serialize_sql($1)", [statement]).fetchall()
        check = rows[0] if rows else None
        tree: dict[str, Any] = json.loads(check[0]) if check else {"error": True}
        if tree.get("error") or len(tree.get("statements", [])) != 1:
            reason = tree.get("error_message", "expected exactly one statement")
            raise SqlRefused(f"facta sql runs one SELECT statement: {reason}")
        names = list(views) if views is not None else [g.view for g in store.views()]
        for name in names:
            table = view_table(open_snapshot(store, name))
            conn.register(f"__arrow_{name}", table)
            conn.execute(f'CREATE TABLE "{name}" AS SELECT * FROM "__arrow_{name}"')
            conn.unregister(f"__arrow_{name}")
        conn.execute("SET enable_external_access = false")
        conn.execute("SET lock_configuration = true")
        result: list[pa.Table] = []
        failure: list[BaseException] = []

        def work() -> None:
            try:
                wrapped = f"SELECT * FROM ({statement}) AS q LIMIT {int(row_cap) + 1}"
                result.append(conn.sql(wrapped).to_arrow_table())
            except BaseException as exc:
                failure.append(exc)

        worker = threading.Thread(target=work, name="facta-sql", daemon=True)
        worker.start()
        worker.join(time_limit)
        if worker.is_alive():
            conn.interrupt()
            worker.join(5.0)
            raise SqlTimeout(f"facta sql: the query ran longer than {time_limit:g} s")
        if failure:
            raise SqlRefused(f"facta sql: {str(failure[0]).splitlines()[0]}") from None
        table = result[0]
        if table.num_rows > row_cap:
            raise SqlRefused(f"facta sql: the result has more than {row_cap} rows (the cap)")
        return table
    finally:
        conn.close()

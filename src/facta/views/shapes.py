"""The query shapes a dashboard needs, each a pyarrow table stamped with position and hash.

KPI (one group), all groups, a time series (every bucket present), top-k groups by a measure,
box plots per group or per bucket, a heat map over two dimensions, and ellipse parameters.
All take ``where``, ``start``/``end`` (half-open, event time), ``group_by`` (a subset of the
dimensions; coarser groups are merged from stored states) and, over time, ``every``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa

from facta.views import calendar
from facta.views.cellcache import ALL_TIME, ranked
from facta.views.measures import CoMoments, Measure, Quantiles
from facta.views.query import Merged, ViewSnapshot, Where, epoch_seconds, fresh_copy
from facta.views.store import BASE_LEVEL

Time = datetime | int | None
# Share of a bivariate normal inside the data ellipse of Mahalanobis radius r: 1 - exp(-r²/2).
ELLIPSE_COVERAGE = {1: 1 - math.exp(-0.5), 2: 1 - math.exp(-2.0)}


def _measure(snapshot: ViewSnapshot, name: str, kind: type[Measure]) -> tuple[int, Any]:
    for index, measure in enumerate(snapshot.view.measures):
        if measure.name == name:
            if not isinstance(measure, kind):
                raise ValueError(
                    f"view {snapshot.view.name!r}: measure {name!r} is {measure.kind}, "
                    f"this query needs {kind.kind}"
                )
            return index, measure
    known = ", ".join(m.name for m in snapshot.view.measures)
    raise ValueError(f"view {snapshot.view.name!r} has no measure {name!r} (measures: {known})")


def _names(snapshot: ViewSnapshot, group_by: Sequence[str] | None) -> tuple[str, ...]:
    return tuple(snapshot.dimensions if group_by is None else group_by)


def groups(
    snapshot: ViewSnapshot,
    *,
    where: Where | None = None,
    start: Time = None,
    end: Time = None,
    group_by: Sequence[str] | None = None,
    per_bucket: bool = False,
) -> pa.Table:
    """Every group's measures (``group_by=()`` gives the KPI: one row over everything).

    With ``per_bucket`` each (group, bucket) that holds events is a row, with a ``bucket`` column.
    """
    merged = snapshot.merge(
        where=where, start=start, end=end, group_by=group_by, by_bucket=per_bucket
    )
    names = _names(snapshot, group_by)
    if not names and not merged and not per_bucket:
        merged = {(): Merged([m.new() for m in snapshot.view.measures], 0)}
    return snapshot.table(merged, names, bucket=per_bucket)


def kpi(
    snapshot: ViewSnapshot, *, where: Where | None = None, start: Time = None, end: Time = None
) -> pa.Table:
    """One row: the measures over every cell matching ``where`` and the time range."""
    return groups(snapshot, where=where, start=start, end=end, group_by=())


def _width(snapshot: ViewSnapshot, every: str | None) -> str:
    """The result bucket width of a query over time: ``every``, or the view's own width."""
    bucket = snapshot.view.definition.bucket
    if bucket is None:
        raise ValueError(f"view {snapshot.view.name!r} has no event-time bucket")
    width = every or bucket.width
    if not calendar.coarser_or_equal(width, bucket.width):
        raise ValueError(
            f"view {snapshot.view.name!r}: every={width!r} is not a multiple of its bucket "
            f"width {bucket.width!r}"
        )
    return width


def _rebucket(
    snapshot: ViewSnapshot,
    merged: dict[tuple[Any, ...], Merged],
    width: str,
    only: set[int] | None = None,
) -> dict[tuple[Any, ...], Merged]:
    """Cells keyed by bucket start (buckets or whole ``width`` roll-ups) merged into ``width``
    buckets."""
    bucket = snapshot.view.definition.bucket
    assert bucket is not None
    if width == bucket.width:
        return merged
    out: dict[tuple[Any, ...], Merged] = {}
    measures = snapshot.view.measures
    for key, cell in merged.items():
        coarse = (*key[:-1], calendar.floor(key[-1], width, bucket.timezone))
        into = out.get(coarse)
        if into is None:
            out[coarse] = Merged(cell.states, cell.changed_at, cell.shared, cell.source)
            continue
        if into.shared:
            into.states = fresh_copy(measures, into.states, only)
            into.shared, into.source = False, None
        for index, (measure, a, b) in enumerate(
            zip(measures, into.states, cell.states, strict=True)
        ):
            if only is None or index in only:
                measure.merge(a, b)
        into.changed_at = max(into.changed_at, cell.changed_at)
    return out


def series(
    snapshot: ViewSnapshot,
    *,
    where: Where | None = None,
    start: Time = None,
    end: Time = None,
    group_by: Sequence[str] | None = (),
    every: str | None = None,
) -> pa.Table:
    """Measures per bucket (of ``every``, default the view's width), every bucket present.

    Buckets without events are rows too: count 0, every other measure null.
    """
    names = _names(snapshot, group_by)
    width = _width(snapshot, every)
    merged = snapshot.merge(
        where=where, start=start, end=end, group_by=names, by_bucket=True, every=width
    )
    merged = _rebucket(snapshot, merged, width)
    zone = snapshot.view.definition.bucket.timezone  # type: ignore[union-attr]
    low, high = epoch_seconds(start), epoch_seconds(end)
    present = [key[-1] for key in merged]
    if not present and (low is None or high is None):
        return snapshot.table({}, names, bucket=True)
    first = low if low is not None else min(present)
    last_end = high if high is not None else calendar.step(max(present), width, zone)
    buckets = calendar.starts(first, last_end, width, zone)
    group_keys = sorted({key[:-1] for key in merged}, key=_sortable) or ([()] if not names else [])
    rows = [(*g, b) for g in group_keys for b in buckets]
    return snapshot.table(merged, names, bucket=True, rows=rows)


def _sortable(key: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple((v is None, str(type(v)), v if v is not None else 0) for v in key)


def top(
    snapshot: ViewSnapshot,
    by: str,
    k: int = 10,
    *,
    where: Where | None = None,
    start: Time = None,
    end: Time = None,
    group_by: Sequence[str] | None = None,
    ascending: bool = False,
    per_bucket: bool = False,
) -> pa.Table:
    """The ``k`` groups (or, ``per_bucket``, group-buckets) with the largest (or smallest)
    value of output column ``by``.

    Only the measure behind ``by`` is merged for every group; the other measures are merged
    for the ``k`` winners only.
    """
    names = _names(snapshot, group_by)
    with snapshot.pinned():
        owner = next(
            (i for i, m in enumerate(snapshot.view.measures) if by in m.output_types()), None
        )
        if owner is None:
            raise ValueError(f"view {snapshot.view.name!r} has no output column {by!r}")
        measure = snapshot.view.measures[owner]
        level = _one_cell_per_row(snapshot, names, start, end, per_bucket)
        if level is not None:
            # Each output row is one stored cell: rank the cached finalized values of that
            # level with numpy, and read the k winners' states as they are.
            cells = snapshot._cached().level(level)
            slots = cells.select(snapshot._allowed(where), epoch_seconds(start), epoch_seconds(end))
            everything = not where and start is None and end is None
            columns = cells.finalized(owner, measure)
            chosen = ranked(columns, by, slots, k, ascending, everything)
            rows, winners = [], {}
            for slot in chosen:
                dims, bucket, changed_at, states = cells.entries[slot]
                key = (*dims, bucket) if per_bucket else tuple(dims)
                rows.append(key)
                winners[key] = Merged(states, changed_at, True, (cells, slot))
            return snapshot.table(winners, names, rows=rows, bucket=per_bucket)
        ranking = snapshot.merge(
            where=where, start=start, end=end, group_by=names, only={owner}, by_bucket=per_bucket
        )
        scored = [(measure.finalize(m.states[owner])[by], key) for key, m in ranking.items()]
        rows = _ranked(scored, k, ascending)
        full = snapshot.merge(
            where=where,
            start=start,
            end=end,
            group_by=names,
            keys=set(rows),
            by_bucket=per_bucket,
        )
        return snapshot.table(full, names, rows=rows, bucket=per_bucket)


def _one_cell_per_row(
    snapshot: ViewSnapshot, names: Sequence[str], start: Time, end: Time, per_bucket: bool
) -> str | None:
    """The cache level whose cells are the output rows one to one, if there is one: the
    bucket cells (per bucket, every dimension) or the all-time cells (every dimension, all
    time)."""
    if tuple(names) != snapshot.dimensions or snapshot.ends_by is not None:
        return None
    if per_bucket or snapshot.view.definition.bucket is None:
        return BASE_LEVEL
    if start is None and end is None:
        return ALL_TIME
    return None


def _ranked(scored: list[tuple[Any, Any]], k: int, ascending: bool) -> list[Any]:
    """The keys of the ``k`` best scores (ties in input order), then keys without a score."""
    present = [(v, key) for v, key in scored if v is not None]
    present.sort(key=lambda item: item[0], reverse=not ascending)
    chosen = [key for _, key in present[:k]]
    if len(chosen) < k:
        chosen += [key for v, key in scored if v is None][: k - len(chosen)]
    return chosen


def heatmap(
    snapshot: ViewSnapshot,
    column: str,
    x: str,
    y: str,
    *,
    where: Where | None = None,
    start: Time = None,
    end: Time = None,
) -> pa.Table:
    """``column`` over two dimensions: one row per (x, y) cell that holds events."""
    table = groups(snapshot, where=where, start=start, end=end, group_by=(x, y))
    if column not in table.column_names:
        raise ValueError(f"view {snapshot.view.name!r} has no output column {column!r}")
    return snapshot.stamp(table.select([x, y, column]))


BOX_FIELDS = [
    ("n", pa.int64()),
    ("min", pa.float64()),
    ("whisker_low", pa.float64()),
    ("q1", pa.float64()),
    ("median", pa.float64()),
    ("q3", pa.float64()),
    ("whisker_high", pa.float64()),
    ("max", pa.float64()),
    ("beyond_low", pa.float64()),
    ("beyond_high", pa.float64()),
]


def box_of(state: Any) -> dict[str, Any]:
    """Five numbers from a quantile sketch, whiskers at 1.5·IQR, estimated counts beyond them.

    The high whisker is the largest value the sketch holds ≤ q3 + 1.5·IQR, the low one the
    smallest ≥ q1 − 1.5·IQR; min and max are exact.
    """
    n = state.n
    if n == 0:
        return {"n": 0} | {name: None for name, _ in BOX_FIELDS[1:]}
    sketch = state.view()
    q1, median, q3 = (float(sketch.get_quantile(q)) for q in (0.25, 0.5, 0.75))
    iqr = q3 - q1
    high = float(sketch.get_quantile(sketch.get_rank(q3 + 1.5 * iqr, True), True))
    low = float(sketch.get_quantile(sketch.get_rank(q1 - 1.5 * iqr, False), False))
    return {
        "n": n,
        "min": state.min(),
        "whisker_low": low,
        "q1": q1,
        "median": median,
        "q3": q3,
        "whisker_high": high,
        "max": state.max(),
        "beyond_low": n * float(sketch.get_rank(low, False)),
        "beyond_high": n * (1.0 - float(sketch.get_rank(high, True))),
    }


def box(
    snapshot: ViewSnapshot,
    measure: str,
    *,
    where: Where | None = None,
    start: Time = None,
    end: Time = None,
    group_by: Sequence[str] | None = None,
    per_bucket: bool = False,
    every: str | None = None,
) -> pa.Table:
    """Box plots of a ``quantiles`` measure per group, or per group and bucket (a sequence)."""
    index, _ = _measure(snapshot, measure, Quantiles)
    names = _names(snapshot, group_by)
    width = _width(snapshot, every) if per_bucket else None
    merged = snapshot.merge(
        where=where,
        start=start,
        end=end,
        group_by=names,
        by_bucket=per_bucket,
        only={index},
        every=width,
    )
    if width is not None:
        merged = _rebucket(snapshot, merged, width, {index})
    columns: dict[str, list[Any]] = {n: [] for n in names}
    if per_bucket:
        columns["bucket"] = []
    columns.update({name: [] for name, _ in BOX_FIELDS})
    for key in sorted(merged, key=_sortable):
        for i, name in enumerate(names):
            columns[name].append(key[i])
        if per_bucket:
            columns["bucket"].append(key[-1])
        cell = merged[key]
        found = cell.memo(("box", index), functools.partial(box_of, cell.states[index]))
        for name, value in found.items():
            columns[name].append(value)
    fields = [pa.field(n, snapshot.view.dimension_type(n)) for n in names]
    if per_bucket:
        fields.append(pa.field("bucket", pa.timestamp("s", tz="UTC")))
    fields += [pa.field(n, t) for n, t in BOX_FIELDS]
    return snapshot.stamp(pa.table({f.name: pa.array(columns[f.name], f.type) for f in fields}))


ELLIPSE_FIELDS = [
    ("n", pa.int64()),
    ("mean_x", pa.float64()),
    ("mean_y", pa.float64()),
    ("var_x", pa.float64()),
    ("var_y", pa.float64()),
    ("cov_xy", pa.float64()),
    ("angle_degrees", pa.float64()),
    ("r1_major", pa.float64()),
    ("r1_minor", pa.float64()),
    ("r2_major", pa.float64()),
    ("r2_minor", pa.float64()),
]


def ellipse_of(state: Any) -> dict[str, Any]:
    """Mean vector, sample covariance and the data ellipses at Mahalanobis radius 1 and 2.

    For a bivariate normal they hold about 39 % and 86 % of the points; for other data they
    are a summary of spread and direction, not a coverage promise.
    """
    if state.n < 2:
        return {"n": state.n} | {name: None for name, _ in ELLIPSE_FIELDS[1:]}
    var_x, var_y = state.m2_x / (state.n - 1), state.m2_y / (state.n - 1)
    cov = state.c / (state.n - 1)
    values, vectors = np.linalg.eigh(np.array([[var_x, cov], [cov, var_y]]))
    major, minor = max(values[1], 0.0), max(values[0], 0.0)
    angle = math.degrees(math.atan2(vectors[1, 1], vectors[0, 1]))
    angle = (angle + 180.0) % 180.0
    return {
        "n": state.n,
        "mean_x": state.mean_x,
        "mean_y": state.mean_y,
        "var_x": var_x,
        "var_y": var_y,
        "cov_xy": cov,
        "angle_degrees": angle,
        "r1_major": math.sqrt(major),
        "r1_minor": math.sqrt(minor),
        "r2_major": 2 * math.sqrt(major),
        "r2_minor": 2 * math.sqrt(minor),
    }


def ellipse(
    snapshot: ViewSnapshot,
    measure: str,
    *,
    where: Where | None = None,
    start: Time = None,
    end: Time = None,
    group_by: Sequence[str] | None = None,
) -> pa.Table:
    """Ellipse parameters of a ``covariance``/``correlation`` measure's two fields, per group."""
    index, _ = _measure(snapshot, measure, CoMoments)
    names = _names(snapshot, group_by)
    merged = snapshot.merge(where=where, start=start, end=end, group_by=names)
    columns: dict[str, list[Any]] = {n: [] for n in names}
    columns.update({name: [] for name, _ in ELLIPSE_FIELDS})
    for key in sorted(merged, key=_sortable):
        for i, name in enumerate(names):
            columns[name].append(key[i])
        for name, value in ellipse_of(merged[key].states[index]).items():
            columns[name].append(value)
    fields = [pa.field(n, snapshot.view.dimension_type(n)) for n in names]
    fields += [pa.field(n, t) for n, t in ELLIPSE_FIELDS]
    return snapshot.stamp(pa.table({f.name: pa.array(columns[f.name], f.type) for f in fields}))


def point_in_time(
    snapshot: ViewSnapshot,
    spine: pa.Table,
    keys: Sequence[str],
    time: str,
    window: int,
) -> pa.Table:
    """For each spine row, the measures of its group over the event-time window
    ``[time − window, time)`` (``window`` in seconds): point-in-time features.

    Only whole buckets inside the window count, so ``window`` should be a multiple of the
    bucket width. Groups are the spine's ``keys`` (dimensions of the view).
    """
    bucket = snapshot.view.definition.bucket
    if bucket is None:
        raise ValueError(f"view {snapshot.view.name!r} has no event-time bucket")
    cells = snapshot.merge(group_by=keys, by_bucket=True)
    by_group: dict[tuple[Any, ...], list[tuple[int, Merged]]] = {}
    for key, cell in cells.items():
        by_group.setdefault(key[:-1], []).append((key[-1], cell))
    measures = snapshot.view.measures
    output = snapshot.view.output_types()
    columns: dict[str, list[Any]] = {name: [] for name in output}
    for row in spine.to_pylist():
        moment = epoch_seconds(row[time])
        assert moment is not None
        low = moment - window
        states = [m.new() for m in measures]
        for start, cell in by_group.get(tuple(row[k] for k in keys), []):
            if start >= low and calendar.step(start, bucket.width, bucket.timezone) <= moment:
                for measure, into, other in zip(measures, states, cell.states, strict=True):
                    measure.merge(into, other)
        values: dict[str, Any] = {}
        for measure, state in zip(measures, states, strict=True):
            values.update(measure.finalize(state))
        for name in output:
            columns[name].append(values[name])
    table = spine
    for name, kind in output.items():
        table = table.append_column(pa.field(name, kind), pa.array(columns[name], kind))
    return snapshot.stamp(table)


def changes(snapshot: ViewSnapshot, since: int) -> pa.Table:
    """Every (group, bucket) cell that changed after log position ``since``, with its
    finalized measures and ``changed_at`` — what a live client needs to catch up."""
    with snapshot.pinned():
        merged = snapshot.merge(by_bucket=True)
        rows = [key for key, cell in merged.items() if cell.changed_at > since]
        rows.sort(key=lambda key: merged[key].changed_at)
        bucketed = snapshot.view.definition.bucket is not None
        table = snapshot.table(merged, snapshot.dimensions, bucket=True, rows=rows)
    return table if bucketed else snapshot.stamp(table.drop_columns(["bucket"]))

"""A page made ready to fold: its columns, groups and per-batch aggregates, computed apart from
the view's state.

Everything here depends only on the evaluated page and the view's definition — never on the
cells the engine holds — so any thread may compute it. A rebuild computes it in the engine's
thread, between folds, while another thread reads and evaluates the next pages (see
``prefetch``: this work holds the GIL, as the fold does). The fold is what must touch state:
finding each group's cell and merging the batch's aggregates and sketch updates into it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pyarrow as pa

from facta.views.batch import Column, Ints
from facta.views.compile import CompiledView
from facta.views.grouping import Key, alltime_parents, group_rows_parts, parent_groups
from facta.views.measures import Batch
from facta.views.pipeline import BUCKET, Evaluated
from facta.views.rollups import Rollups


@dataclasses.dataclass(frozen=True, slots=True)
class Level:
    """The rows of a page grouped one way: bucket and all-time cells (``target`` ``""``), or
    the cells of a calendar roll-up level (``target`` names it: ``"1w"``, …)."""

    keys: list[Key]
    batch: Batch
    changed_at: list[int]  # per group: the highest position among its rows
    target: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class Prepared:
    """An evaluated page and its levels (none when no row was kept)."""

    evaluated: Evaluated
    levels: tuple[Level, ...]


def prepare(
    view: CompiledView,
    evaluated: Evaluated,
    rollups: Rollups | None = None,
    *,
    from_rows: bool = False,
) -> Prepared:
    """Group the kept rows and compute what every measure needs of the batch (for the buckets,
    the all-time cells and each of ``rollups``' calendar levels).

    The coarser levels' aggregates are derived from the bucket groups' (see ``derived``): each
    of their groups is a union of bucket groups, so they are not computed from the rows again
    (``from_rows`` computes them from the rows, as a reference for tests).
    """
    rows = evaluated.rows
    if rows.num_rows == 0:
        return Prepared(evaluated, ())
    definition = view.definition
    positions = rows.column("_position").to_numpy().astype(np.int64)
    columns = {name: column_of(view, rows.column(name), name) for name in view.measure_fields()}
    bucket = BUCKET if definition.bucket is not None else None
    groups, keys, parts = group_rows_parts(rows, definition.dimensions, bucket)
    base = Batch(groups, columns, positions, groups.sorted_rows())
    changed = np.zeros(groups.count, dtype=np.int64)
    np.maximum.at(changed, groups.inverse, positions)
    for measure in view.measures:
        measure.prepare(base)
    levels = [Level(keys, base, changed.tolist())]
    if bucket is not None:
        # The all-time roll-up per group: queries without a time range read one cell. Its
        # groups are the bucket groups' dimensions, found without grouping the rows again.
        coarser = [("", *alltime_parents(parts))]
        # The calendar roll-ups (days, weeks, months above the buckets), the same way.
        for name in () if rollups is None else rollups.levels:
            coarser.append((name, *rollups.level_parents(name, parts)))  # type: ignore[union-attr]
        for target, parent, parent_keys in coarser:
            levels.append(_derived(view, base, changed, parent, parent_keys, target, from_rows))
    return Prepared(evaluated, tuple(levels))


def _derived(
    view: CompiledView,
    child: Batch,
    child_changed: Ints,
    parent: Ints,
    keys: list[Key],
    target: str,
    from_rows: bool = False,
) -> Level:
    """A coarser level whose group ``parent[c]`` is the union of ``child``'s groups ``c``."""
    count = len(keys)
    groups = parent_groups(child.groups, parent, count)
    order = groups.sorted_rows() if from_rows else None
    batch = Batch(groups, child.columns, child.positions, order)
    changed = np.zeros(count, dtype=np.int64)
    np.maximum.at(changed, parent, child_changed)
    for measure in view.measures:
        if from_rows:
            measure.prepare(batch)
        else:
            measure.derive(batch, child, parent)
    return Level(keys, batch, changed.tolist(), target)


def column_of(view: CompiledView, column: pa.ChunkedArray, name: str) -> Column:
    """A measure field's Arrow column as the measures read it."""
    kind = view.kinds[name]
    array: Any = column.combine_chunks()
    if kind == "int":
        present = array.is_valid().to_numpy(zero_copy_only=False)
        return Column.ints(array.fill_null(0).to_numpy(zero_copy_only=False), present)
    if kind == "float":
        return Column.floats(
            array.cast(pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False)
        )
    if kind == "string":
        return Column.text_array(array)
    if kind == "time":
        return Column.objects([None if v is None else v.isoformat() for v in array.to_pylist()])
    return Column.objects(array.to_pylist())

"""A small page prepared once for every level it folds into: the levels' groups side by side.

A live view folds each small page into its buckets, its all-time cells and each calendar
roll-up level (see ``rollups``). Prepared level by level, that is one grouping of the batch and
one call of every measure's ``prepare`` and ``update`` per level — four rounds of a few dozen
numpy calls on fifty rows, which cost more than the arithmetic. Here the page's rows are
stacked once per level (the bucket level's rows, then the same rows again for the all-time
level, and so on) and every level's groups are numbered one after the other, so a single
batch holds them all: each measure prepares and updates once. A group still holds exactly the
rows it held in its own level, in the same order, so every cell gets the same values as when
the levels were prepared apart.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Final

import numpy as np
import pyarrow as pa

from facta.views.batch import Column, Groups
from facta.views.compile import CompiledView
from facta.views.grouping import Key, dims_text, group_rows, rollup_groups
from facta.views.measures import Batch
from facta.views.pipeline import BUCKET, Evaluated
from facta.views.prepared import Level, Prepared, column_of
from facta.views.rollups import Rollups

# Pages of at most this many rows are grouped, and their text columns encoded, in plain Python
# (the engine passes its ``small_batch_events``): for a live page of fifty events Arrow's and
# numpy's per-call costs exceed the work.
PYTHON_ROWS: Final = 1000


@dataclasses.dataclass(frozen=True, slots=True)
class Part:
    """The groups of one level within a stacked batch: ``keys[start:end]``."""

    target: str  # "" for the bucket and all-time cells, else the roll-up level's name
    start: int
    end: int


@dataclasses.dataclass(frozen=True, slots=True)
class StackedLevel(Level):
    """A :class:`Level` whose groups belong to several levels, one :class:`Part` each; the
    first part is the bucket level."""

    parts: tuple[Part, ...] = ()


def prepare_stacked(
    view: CompiledView, evaluated: Evaluated, rollups: Rollups, python_rows: int = PYTHON_ROWS
) -> Prepared:
    """Group the kept rows for the buckets, the all-time cells and every roll-up level of
    ``rollups``, in one batch (a bucketed view; ``prepare`` does the rest). Up to
    ``python_rows`` rows are grouped and their text columns encoded in plain Python."""
    rows = evaluated.rows
    if rows.num_rows == 0:
        return Prepared(evaluated, ())
    definition = view.definition
    small = rows.num_rows <= python_rows
    if small and all(
        view.kinds[name] in ("string", "int", "bool") for name in definition.dimensions
    ):
        groups, keys = _python_groups(rows, definition.dimensions)
    else:
        groups, keys = group_rows(rows, definition.dimensions, BUCKET)
    levels: list[tuple[str, Groups, list[Key]]] = [("", groups, keys)]
    alltime, alltime_keys = rollup_groups(groups, keys)
    levels.append(("", alltime, alltime_keys))
    for name in rollups.levels:
        parents, parent_keys = rollups.groups(name, groups, keys)
        levels.append((name, parents, parent_keys))
    copies = len(levels)
    inverse, parts, stacked_keys, offset = [], [], [], 0
    for target, level_groups, level_keys in levels:
        inverse.append(level_groups.inverse + offset)
        parts.append(Part(target, offset, offset + level_groups.count))
        stacked_keys += level_keys
        offset += level_groups.count
    stacked = Groups(np.concatenate(inverse), offset)
    columns = {
        name: _repeated(_small_column(view, rows.column(name), name, small), copies)
        for name in view.measure_fields()
    }
    positions = _tiled(rows.column("_position").to_numpy().astype(np.int64), copies)
    batch = Batch(stacked, columns, positions, stacked.sorted_rows())
    changed = np.zeros(stacked.count, dtype=np.int64)
    np.maximum.at(changed, stacked.inverse, positions)
    for measure in view.measures:
        measure.prepare(batch)
    level = StackedLevel(stacked_keys, batch, changed.tolist(), "", tuple(parts))
    return Prepared(evaluated, (level,))


def _python_groups(rows: pa.Table, dimensions: Sequence[str]) -> tuple[Groups, list[Key]]:
    """``group_rows`` for a few rows of text, integer or boolean dimensions, in plain Python:
    the same groups (each row in the same one), numbered in the order they first appear."""
    columns = [rows.column(name).to_pylist() for name in dimensions]
    starts = rows.column(BUCKET).to_pylist()
    index: dict[tuple[Any, ...], int] = {}
    inverse = np.fromiter(
        (
            index.setdefault((*values, start), len(index))
            for *values, start in zip(*columns, starts, strict=True)
        ),
        dtype=np.int64,
        count=len(starts),
    )
    keys = [(dims_text(group[:-1]), int(group[-1])) for group in index]
    return Groups(inverse, len(index)), keys


def _small_column(view: CompiledView, column: pa.ChunkedArray, name: str, small: bool) -> Column:
    """``column_of``; for a small page, text and double columns without Arrow compute calls
    (a cast and a null fill cost more than fifty values)."""
    kind = view.kinds[name]
    if small and kind == "string":
        return _python_texts(column)
    if small and kind == "float" and column.type == pa.float64():
        # A double column's nulls come out of Arrow as NaN, as ``fill_null(nan)`` makes them.
        return Column.floats(column.to_numpy())
    return column_of(view, column, name)


def _python_texts(column: pa.ChunkedArray) -> Column:
    """``Column.text_array`` for a few rows, in plain Python: the same values, codes and
    sorted labels, without Arrow's per-call cost."""
    values = column.to_pylist()
    labels = sorted({value for value in values if value is not None})
    rank = {label: code for code, label in enumerate(labels)}
    count = len(values)
    present = np.fromiter((value is not None for value in values), dtype=np.bool_, count=count)
    codes = np.fromiter((rank.get(value, -1) for value in values), dtype=np.int64, count=count)
    texts = np.empty(count, dtype=object)
    texts[:] = values
    label_array = np.empty(len(labels), dtype=object)
    label_array[:] = labels
    return Column(texts, present, True, codes, label_array)


def _repeated(column: Column, copies: int) -> Column:
    """The column's rows, ``copies`` times over."""
    return Column(
        _tiled(column.values, copies),
        _tiled(column.present, copies),
        column.texts,
        None if column.codes is None else _tiled(column.codes, copies),
        column.labels,
    )


def _tiled(values: Any, copies: int) -> Any:
    """``np.tile`` of a one-dimensional array, without its Python-level reshaping."""
    return np.concatenate((values,) * copies)

"""The reader's cache of a view's decoded cells, per level, with columns for numpy.

Queries never decode a cell twice: the cache keeps every decoded cell of the current
generation and, at each new checkpoint, reads only the cells whose ``changed_at`` is past the
cached one. Beside the decoded states it keeps, per level, numpy columns — each cell's bucket
start and the code of each dimension value — so a query selects its cells with array masks
instead of a Python loop over every cell, and, once asked, each measure's finalized values,
patched only for the cells a refresh changed, so top-k ranks tens of thousands of cells with
``argpartition``.
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import itertools
from collections.abc import Callable, Mapping
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from facta.collector import settle_long_lived
from facta.views.grouping import dims_text
from facta.views.measures import Measure

# The cache level of the all-time roll-up cells (stored in the base level at bucket ROLLUP).
ALL_TIME: Final = "all"
Entry = tuple[list[Any], int, int, list[Any]]  # dimension values, bucket, changed_at, states
Slots = npt.NDArray[np.int64]
MEMO_SIZE: Final = 8192
MERGES_KEPT: Final = 1024
# Decoding this many cells at once makes them long-lived objects worth freezing (collector.py).
SETTLE_AFTER: Final = 1000
_MISSING: Final = object()


@dataclasses.dataclass(slots=True)
class FinalizedColumns:
    """One measure's output values for every cell of a level (by slot); ``valid`` is false
    where the value is null. Integers stay int64, so ranking them is exact."""

    values: dict[str, npt.NDArray[Any]]
    valid: dict[str, npt.NDArray[np.bool_]]
    size: int
    pending: set[int]
    # Per (output, ascending): the slots with a value, best first (ties in slot order).
    orders: dict[tuple[str, bool], Slots] = dataclasses.field(default_factory=dict)

    def reorder(self, changed: set[int]) -> None:
        """Keep the sorted orders valid after the values of ``changed`` slots were set: a few
        changed cells move by binary search; many, or text values, sort again when asked."""
        if len(changed) > max(64, self.size // 100):
            self.orders.clear()
            return
        moved = np.asarray(sorted(changed), dtype=np.int64)
        for (name, ascending), order in list(self.orders.items()):
            values, valid = self.values[name], self.valid[name]
            if values.dtype == object:
                del self.orders[(name, ascending)]
                continue
            sign = 1 if ascending else -1
            kept = order[~np.isin(order, moved)]
            for slot in moved.tolist():
                if valid[slot]:
                    wanted = (sign * values[slot], slot)
                    at = bisect.bisect_left(
                        range(kept.size), wanted, key=lambda i: (sign * values[kept[i]], kept[i])
                    )
                    kept = np.insert(kept, at, slot)
            self.orders[(name, ascending)] = kept

    def order(self, name: str, ascending: bool) -> Slots:
        found = self.orders.get((name, ascending))
        if found is None:
            present = np.flatnonzero(self.valid[name]).astype(np.int64)
            values = self.values[name][present]
            if values.dtype == object:
                pairs = sorted(
                    zip(values.tolist(), present.tolist(), strict=True),
                    key=lambda item: item[0],
                    reverse=not ascending,
                )
                found = np.asarray([slot for _, slot in pairs], dtype=np.int64)
            else:
                keys = values if ascending else -values
                found = present[np.lexsort((present, keys))]
            self.orders[(name, ascending)] = found
        return found


class LevelCells:
    """The cached cells of one level, in the order first read (a cell keeps its slot)."""

    def __init__(self, ndims: int) -> None:
        self.entries: list[Entry] = []
        self.slots: dict[tuple[str, int], int] = {}
        self.by_dims: dict[str, list[int]] = {}
        self._codes: list[dict[Any, int]] = [{} for _ in range(ndims)]
        self._code_rows: list[list[int]] = [[] for _ in range(ndims)]
        self._starts: list[int] = []
        self._arrays: tuple[npt.NDArray[np.int64], list[npt.NDArray[np.int64]]] | None = None
        self._finalized: dict[int, FinalizedColumns] = {}
        # Values derived from one cell's states (finalized rows, boxes), until it changes.
        self._memo: dict[int, dict[Any, Any]] = {}
        self._memo_size = 0

    def put(self, dims_key: str, entry: Entry) -> None:
        key = (dims_key, entry[1])
        slot = self.slots.get(key)
        if slot is None:
            slot = self.slots[key] = len(self.entries)
            self.entries.append(entry)
            self.by_dims.setdefault(dims_key, []).append(slot)
            for index, value in enumerate(entry[0]):
                codes = self._codes[index]
                self._code_rows[index].append(codes.setdefault(value, len(codes)))
            self._starts.append(entry[1])
            self._arrays = None
        else:
            self.entries[slot] = entry
            for columns in self._finalized.values():
                columns.pending.add(slot)
            dropped = self._memo.pop(slot, None)
            if dropped is not None:
                self._memo_size -= len(dropped)

    def memo(self, slot: int, what: Any, compute: Callable[[], Any]) -> Any:
        """``compute()`` for this cell, kept until the cell changes (at most MEMO_SIZE kept)."""
        kept = self._memo.get(slot)
        found = _MISSING if kept is None else kept.get(what, _MISSING)
        if found is _MISSING:
            if self._memo_size >= MEMO_SIZE:
                self._memo.clear()
                self._memo_size = 0
            found = self._memo.setdefault(slot, {})[what] = compute()
            self._memo_size += 1
        return found

    def _columns(self) -> tuple[npt.NDArray[np.int64], list[npt.NDArray[np.int64]]]:
        if self._arrays is None:
            self._arrays = (
                np.asarray(self._starts, dtype=np.int64),
                [np.asarray(rows, dtype=np.int64) for rows in self._code_rows],
            )
        return self._arrays

    def select(self, allowed: Mapping[int, set[Any]], low: int | None, high: int | None) -> Slots:
        """Slots (ascending) of the cells whose dimension ``i`` is in ``allowed[i]`` and whose
        bucket start is in ``[low, high)``."""
        ndims = len(self._codes)
        if ndims and len(allowed) == ndims:
            # Every dimension pinned: look the groups up instead of masking every cell.
            texts = (dims_text(v) for v in itertools.product(*(allowed[i] for i in range(ndims))))
            found = sorted(slot for text in texts for slot in self.by_dims.get(text, ()))
            return np.asarray(
                [
                    slot
                    for slot in found
                    if (low is None or self._starts[slot] >= low)
                    and (high is None or self._starts[slot] < high)
                ],
                dtype=np.int64,
            )
        if not allowed and low is None and high is None:
            return np.arange(len(self.entries), dtype=np.int64)
        starts, codes = self._columns()
        mask = np.ones(starts.size, dtype=np.bool_)
        if low is not None:
            mask &= starts >= low
        if high is not None:
            mask &= starts < high
        for index, values in allowed.items():
            known = self._codes[index]
            wanted = [known[v] for v in values if v in known]
            mask &= np.isin(codes[index], np.asarray(wanted, dtype=np.int64))
        return np.flatnonzero(mask).astype(np.int64)

    def finalized(self, index: int, measure: Measure) -> FinalizedColumns:
        """The finalized outputs of measure ``index`` for every cell (computed once, then
        patched for the cells refreshed since)."""
        columns = self._finalized.get(index)
        count = len(self.entries)
        if columns is None:
            values: dict[str, npt.NDArray[Any]] = {}
            for name, kind in measure.output_types().items():
                if pa.types.is_integer(kind):
                    values[name] = np.zeros(count, dtype=np.int64)
                elif pa.types.is_floating(kind):
                    values[name] = np.zeros(count, dtype=np.float64)
                else:
                    values[name] = np.empty(count, dtype=object)
            valid = {name: np.zeros(count, dtype=np.bool_) for name in values}
            columns = self._finalized[index] = FinalizedColumns(values, valid, 0, set())
        if columns.size < count:
            for name in columns.values:
                columns.values[name] = _grown(columns.values[name], count)
                columns.valid[name] = _grown(columns.valid[name], count)
            columns.pending.update(range(columns.size, count))
            columns.size = count
        if columns.pending:
            finalize = measure.finalize
            for slot in columns.pending:
                for name, value in finalize(self.entries[slot][3][index]).items():
                    present = value is not None
                    columns.valid[name][slot] = present
                    if present:
                        columns.values[name][slot] = value
            columns.reorder(columns.pending)
            columns.pending.clear()
        return columns


def _grown(array: npt.NDArray[Any], size: int) -> npt.NDArray[Any]:
    grown = np.zeros(size, dtype=array.dtype) if array.dtype != object else np.empty(size, object)
    grown[: array.size] = array
    return grown


@dataclasses.dataclass(slots=True)
class ViewCache:
    """The cells of one view generation, as of ``checkpoint``, by level.

    A refresh only files the changed cells' bytes under their level (``pending``); a level's
    cells are decoded when a query first asks for that level. A live query of all-time totals
    thus never decodes the day, week and month cells each commit also rewrites.
    """

    generation: int
    created_at: str
    checkpoint: int
    ndims: int
    # Decodes a pending cell into (level's dims key, entry).
    decode: Callable[[Any], tuple[str, Entry]]
    levels: dict[str, LevelCells] = dataclasses.field(default_factory=dict)
    pending: dict[str, dict[tuple[str, int], Any]] = dataclasses.field(default_factory=dict)
    # Merged states of groups of several cells, by the cells (level, slot, changed_at) merged.
    merges: collections.OrderedDict[Any, list[Any]] = dataclasses.field(
        default_factory=collections.OrderedDict
    )

    def merged(self, key: Any, merge: Callable[[], list[Any]]) -> list[Any]:
        """The states ``merge()`` gives for the cells named by ``key``, merged once.

        Merging sketches is randomised (a KLL compaction keeps a random half), so merging the
        same cells twice can give quantiles that differ within the sketch's error. Kept here,
        the same cells merge to the same states: a query asked twice of the same state gets the
        same answer, and a repeated query skips the merge. At most ``MERGES_KEPT`` are kept
        (least recently used first out); a cell that changes has a new ``changed_at``, so its
        old merges are never hit again.
        """
        found = self.merges.get(key)
        if found is not None:
            self.merges.move_to_end(key)
            return found
        found = self.merges[key] = merge()
        if len(self.merges) > MERGES_KEPT:
            self.merges.popitem(last=False)
        return found

    def add(self, level: str, dims: str, bucket: int, cell: Any) -> None:
        """File a changed cell (its stored form) to be decoded when ``level`` is read."""
        self.pending.setdefault(level, {})[(dims, bucket)] = cell

    def level(self, name: str) -> LevelCells:
        found = self.levels.get(name)
        if found is None:
            found = self.levels[name] = LevelCells(self.ndims)
        waiting = self.pending.pop(name, None)
        if waiting:
            for cell in waiting.values():
                found.put(*self.decode(cell))
            if len(waiting) >= SETTLE_AFTER:
                settle_long_lived()
        return found

    def existing(self, name: str) -> LevelCells | None:
        """The level's cells, or None if it has none."""
        if name not in self.levels and name not in self.pending:
            return None
        return self.level(name)


def ranked(
    columns: FinalizedColumns, name: str, slots: Slots, k: int, ascending: bool, everything: bool
) -> list[int]:
    """The ``k`` of ``slots`` (ascending; ``everything``: all cells) with the best value of
    output ``name``, ties in slot order; then slots without a value (in slot order) if fewer
    than ``k`` have one."""
    order = columns.order(name, ascending)
    if not everything:
        wanted = np.zeros(columns.size, dtype=np.bool_)
        wanted[slots] = True
        order = order[wanted[order]]
    chosen: list[int] = order[:k].tolist()
    if len(chosen) < k:
        missing = slots[~columns.valid[name][slots]]
        chosen += missing[: k - len(chosen)].tolist()
    return chosen

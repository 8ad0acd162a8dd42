"""Calendar roll-ups: coarser cells kept with a bucketed view so zoomed-out queries stay fast.

A view bucketed by the hour also keeps day, week and month cells; a daily view keeps week and
month cells (weeks and months do not nest in each other, and a weekly or monthly view keeps
none). Buckets are aligned on the calendar of the view's time zone, as the view's own buckets
are. A roll-up cell always holds exactly the rows of the bucket cells below it, kept one of two
ways, whichever is cheaper for the page at hand:

- a small page (a live view's few dozen events) is folded into each roll-up level directly, as
  into the buckets and the all-time cells: re-merging a month cell from its 30 day cells at
  every commit cost more than the rest of a small commit;
- a large page (a rebuild's 50,000 events) only marks the roll-up cells above the buckets it
  changed; at the next commit each marked cell is merged anew from its children, in bucket
  order: one merge per commit instead of folding every row into two or three more levels.

Either way exact measures equal the merge of the bucket cells (up to float rounding) and
sketches hold the same values (within the sketch's error). Changed roll-up cells are written
in the same transaction as the bucket cells, so a reader never sees the levels disagree.

Queries read a time range as whole roll-up cells in the middle and finer cells at the edges
(:func:`pieces`): a year of a daily view is about a dozen month cells instead of 365 days.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final

import msgspec
import numpy as np

from facta.views import calendar
from facta.views.batch import Groups, Ints
from facta.views.compile import CompiledView
from facta.views.grouping import GroupParts, Key, parent_groups, unique_inverse
from facta.views.measures import merged_states
from facta.views.store import BASE_LEVEL, ViewStore

# Per bucket width: each roll-up level and the level it nests in for queries (its children).
LEVELS: Final[dict[str, tuple[tuple[str, str], ...]]] = {
    "1h": (("1d", "1h"), ("1w", "1d"), ("1mo", "1d")),
    "1d": (("1w", "1d"), ("1mo", "1d")),
    "1w": (),
    "1mo": (),
}
# A range at least this long reads month cells rather than week cells.
MONTHS_FROM_SECONDS: Final = 62 * 86400


class Rollups:
    """The roll-up cells of one view, per level, folded by its engine batch by batch.

    All of them stay in memory (a daily view keeps about a fifth more cells than its buckets;
    an hourly one about a twentieth); only the cells changed since the last commit are written.
    """

    def __init__(self, view: CompiledView) -> None:
        bucket = view.definition.bucket
        self._measures = view.measures
        self._zone = "UTC" if bucket is None else bucket.timezone
        base = None if bucket is None else bucket.width
        self.levels: tuple[str, ...] = () if base is None else tuple(lv for lv, _ in LEVELS[base])
        self.cells: dict[str, dict[Key, Any]] = {level: {} for level in self.levels}
        self.dirty: dict[str, set[Key]] = {level: set() for level in self.levels}
        self._floors: dict[str, dict[int, int]] = {level: {} for level in self.levels}
        # Per roll-up cell, the bucket cells below it; and the cells to merge anew at commit.
        self._children: dict[str, dict[Key, set[Key]]] = {level: {} for level in self.levels}
        self._stale: dict[str, set[Key]] = {level: set() for level in self.levels}

    def load(self, store: ViewStore, view: str, generation: int, cell: Callable[..., Any]) -> None:
        """Load every level's cells (after a restart); ``cell(states, changed_at)`` builds one."""
        for level in self.levels:
            found = self.cells[level]
            for stored in store.cells(view, generation, level=level):
                raw = msgspec.msgpack.decode(stored.state)
                states = [m.load(r) for m, r in zip(self._measures, raw, strict=True)]
                found[(stored.dims, stored.bucket)] = cell(states, stored.changed_at)

    def floor(self, start: int, level: str) -> int:
        """The start of the ``level`` cell holding the bucket that starts at ``start``."""
        known = self._floors[level]
        found = known.get(start)
        if found is None:
            found = known[start] = calendar.floor(start, level, self._zone)
        return found

    def groups(self, level: str, groups: Groups, keys: Sequence[Key]) -> tuple[Groups, list[Key]]:
        """The ``level`` groups of a batch's bucket groups (rows keep their order)."""
        parent, parent_keys = self.parents(level, keys)
        return parent_groups(groups, parent, len(parent_keys)), parent_keys

    def parents(self, level: str, keys: Sequence[Key]) -> tuple[Ints, list[Key]]:
        """Each bucket group's ``level`` group (numbered in order of appearance), and their keys."""
        index: dict[Key, int] = {}
        floor = self.floor
        parent = np.fromiter(
            (index.setdefault((dims, floor(start, level)), len(index)) for dims, start in keys),
            dtype=np.int64,
            count=len(keys),
        )
        return parent, list(index)

    def level_parents(self, level: str, parts: GroupParts) -> tuple[Ints, list[Key]]:
        """``parents``, from the halves of the bucket groups' keys: the floors are looked up
        once per distinct bucket start, the groups numbered with numpy."""
        distinct, at = np.unique(parts.starts, return_inverse=True)
        floors = np.array([self.floor(s, level) for s in distinct.tolist()], dtype=np.int64)
        floor_values, floor_at = np.unique(floors, return_inverse=True)
        width = max(len(floor_values), 1)
        code = parts.dims_index * width + floor_at.reshape(-1)[at.reshape(-1)]
        used, parent = unique_inverse(code, max(len(parts.dims), 1) * width)
        starts = floor_values.tolist()
        keys = [(parts.dims[c // width], starts[c % width]) for c in used.tolist()]
        return parent, keys

    def index(self, buckets: Iterable[Key]) -> None:
        """Note bucket cells (new or not) under the roll-up cells above them."""
        buckets = list(buckets)  # read once per level
        for level in self.levels:
            children = self._children[level]
            for key in buckets:
                parent = (key[0], self.floor(key[1], level))
                found = children.get(parent)
                if found is None:
                    children[parent] = {key}
                else:
                    found.add(key)

    def mark(self, buckets: Iterable[Key]) -> None:
        """The roll-up cells above ``buckets`` are to be merged anew from their children."""
        buckets = list(buckets)  # read once per level
        for level in self.levels:
            stale = self._stale[level]
            for key in buckets:
                stale.add((key[0], self.floor(key[1], level)))

    def changed(
        self, buckets: Mapping[Key, Any], make: Callable[..., Any]
    ) -> list[tuple[str, Key, Any]]:
        """The cells changed since the last call, as (level, key, cell); forgets that they were.
        The caller serialises them (with the bucket cells of the same commit, in one pass).

        Marked cells are first merged anew from their children among ``buckets`` (built with
        ``make(states, changed_at)``)."""
        for level in self.levels:
            children, stale = self._children[level], self._stale[level]
            for parent in stale:
                kids = [buckets[k] for k in sorted(children[parent], key=lambda k: k[1])]
                states = merged_states(self._measures, [kid.states for kid in kids])
                self.cells[level][parent] = make(states, max(k.changed_at for k in kids))
            self.dirty[level].update(stale)
            stale.clear()
        written: list[tuple[str, Key, Any]] = []
        for level in self.levels:
            cells, dirty = self.cells[level], self.dirty[level]
            written += [(level, key, cells[key]) for key in dirty]
            dirty.clear()
        return written


def chain(base: str, every: str | None, span: int | None) -> list[tuple[str, str]]:
    """The levels a query may read, finest first, as (stored level, width).

    ``every`` (a coarser width the result is bucketed by) caps the chain at that width; without
    it, a ``span`` (seconds) of at least two months prefers month cells over week cells.
    """
    levels = dict(LEVELS[base])
    found = [(BASE_LEVEL, base)]
    if every is None:
        top = "1mo" if span is None or span >= MONTHS_FROM_SECONDS else "1w"
        if top not in levels:
            top = next((level for level, _ in reversed(LEVELS[base])), base)
    else:
        top = every
    if top == base or top not in levels:
        return found
    path = [top]
    while levels.get(path[-1], base) != base:
        path.append(levels[path[-1]])
    return found + [(level, level) for level in reversed(path)]


def pieces(
    low: int | None, high: int | None, levels: Sequence[tuple[str, str]], zone: str
) -> list[tuple[str, int | None, int | None]]:
    """Which cells cover the bucket starts in ``[low, high)``: (stored level, from, to) —
    cells of that level whose start is in ``[from, to)`` (``None``: unbounded).

    Whole cells of the coarsest level in the middle, finer levels for the edges. A roll-up
    cell is used only when it lies wholly inside the range, so every bucket cell whose start is
    in the range is counted exactly once.
    """
    level, width = levels[-1]
    if len(levels) == 1:
        return [(level, low, high)]
    first = None if low is None else _ceil(low, width, zone)
    last = None if high is None else calendar.floor(high, width, zone)
    if first is not None and last is not None and first >= last:
        return pieces(low, high, levels[:-1], zone)
    found: list[tuple[str, int | None, int | None]] = [(level, first, last)]
    if low is not None and first is not None and low < first:
        found += pieces(low, first, levels[:-1], zone)
    if high is not None and last is not None and last < high:
        found += pieces(last, high, levels[:-1], zone)
    return found


def _ceil(instant: int, width: str, zone: str) -> int:
    start = calendar.floor(instant, width, zone)
    return start if start == instant else calendar.step(start, width, zone)

"""Calendar roll-ups: coarser cells kept with a bucketed view so zoomed-out queries stay fast.

A view bucketed by the hour also keeps day, week and month cells; a daily view keeps week and
month cells (weeks and months do not nest in each other, and a weekly or monthly view keeps
none). Buckets are aligned on the calendar of the view's time zone, as the view's own buckets
are. Each roll-up cell is recomputed, at every commit that changed one of its children, as the
merge of its children in bucket order — so it is exactly the merge of the bucket cells below
it — and is written in the same transaction as those children.

Queries read a time range as whole roll-up cells in the middle and finer cells at the edges
(:func:`pieces`): a year of a daily view is about a dozen month cells instead of 365 days.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, Protocol

import msgspec

from facta.views import calendar
from facta.views.compile import CompiledView
from facta.views.grouping import ROLLUP, Key
from facta.views.store import BASE_LEVEL, StoredCell, ViewStore

# Per bucket width: each roll-up level and the level it is merged from (its children).
LEVELS: Final[dict[str, tuple[tuple[str, str], ...]]] = {
    "1h": (("1d", "1h"), ("1w", "1d"), ("1mo", "1d")),
    "1d": (("1w", "1d"), ("1mo", "1d")),
    "1w": (),
    "1mo": (),
}
# A roll-up cell refreshed more often than this keeps the merge of its first children.
PREFIX_AFTER: Final = 3
# A range at least this long reads month cells rather than week cells.
MONTHS_FROM_SECONDS: Final = 62 * 86400

RollupKey = tuple[str, str, int]  # level, dimension values as text, bucket start


class HasStates(Protocol):
    states: list[Any]
    changed_at: int


class RolledCell:
    __slots__ = ("changed_at", "states")

    def __init__(self, states: list[Any], changed_at: int) -> None:
        self.states = states
        self.changed_at = changed_at


class Rollups:
    """The roll-up levels of one view, maintained by its engine at each commit.

    Only levels that other levels are merged from (the days of an hourly view) stay in memory;
    the others are merged, serialised and written, then dropped.
    """

    def __init__(self, view: CompiledView) -> None:
        bucket = view.definition.bucket
        self._measures = view.measures
        self._zone = "UTC" if bucket is None else bucket.timezone
        base = None if bucket is None else bucket.width
        self.levels: tuple[tuple[str, str], ...] = () if base is None else LEVELS[base]
        # Child levels spelled as stored: the view's own buckets are the base level.
        self._child = {
            level: BASE_LEVEL if child == base else child for level, child in self.levels
        }
        self._kept = {child for child in self._child.values() if child != BASE_LEVEL}
        self._children: dict[RollupKey, set[tuple[str, int]]] = {}
        self._states: dict[str, dict[tuple[str, int], RolledCell]] = {k: {} for k in self._kept}
        self._floors: dict[str, dict[int, int]] = {level: {} for level, _ in self.levels}
        self._primed = False
        # Per roll-up cell: the merge of all its children but the last, serialised, and which
        # children (with the position each last changed at) it holds — see ``_merge_children``.
        self._prefixes: dict[RollupKey, tuple[tuple[tuple[int, int], ...], list[Any]]] = {}
        self._refreshes: dict[RollupKey, int] = {}
        self.resumed = 0  # refreshes that resumed from a kept merge

    def load(self, store: ViewStore, view: str, generation: int) -> None:
        """Load the levels kept in memory (after a restart)."""
        for level in self._kept:
            for stored in store.cells(view, generation, level=level):
                raw = msgspec.msgpack.decode(stored.state)
                states = [m.load(r) for m, r in zip(self._measures, raw, strict=True)]
                self._states[level][(stored.dims, stored.bucket)] = RolledCell(
                    states, stored.changed_at
                )
                self._index(level, (stored.dims, stored.bucket))

    def _floor(self, start: int, level: str) -> int:
        known = self._floors[level]
        found = known.get(start)
        if found is None:
            found = known[start] = calendar.floor(start, level, self._zone)
        return found

    def _index(self, child_level: str, key: tuple[str, int]) -> None:
        dims, start = key
        for level, child in self._child.items():
            if child == child_level:
                parent = (level, dims, self._floor(start, level))
                self._children.setdefault(parent, set()).add(key)

    def refresh(self, cells: Mapping[Key, HasStates], dirty: Iterable[Key]) -> list[StoredCell]:
        """Recompute every roll-up cell above a ``dirty`` bucket cell; return them to store."""
        if not self.levels:
            return []
        just_primed = not self._primed
        if just_primed:
            for key in cells:
                if key[1] != ROLLUP:
                    self._index(BASE_LEVEL, key)
            self._primed = True
        touched: dict[str, set[tuple[str, int]]] = {level: set() for level, _ in self.levels}
        for key in dirty:
            if key[1] == ROLLUP:
                continue
            if not just_primed:  # possibly a new cell since the last commit
                self._index(BASE_LEVEL, key)
            for level, child in self._child.items():
                if child == BASE_LEVEL:
                    touched[level].add((key[0], self._floor(key[1], level)))
        written = []
        for level, _ in self.levels:  # children levels come first in LEVELS
            child = self._child[level]
            if child != BASE_LEVEL:
                for dims, start in touched[child]:
                    touched[level].add((dims, self._floor(start, level)))
            source: Mapping[tuple[str, int], HasStates] = (
                cells if child == BASE_LEVEL else self._states[child]
            )
            for dims, start in touched[level]:
                kids = sorted(self._children[(level, dims, start)], key=lambda k: k[1])
                states, changed_at = self._merge_children(
                    (level, dims, start), [source[kid] for kid in kids], [k[1] for k in kids]
                )
                if level in self._kept:
                    self._states[level][(dims, start)] = RolledCell(states, changed_at)
                    self._index(level, (dims, start))
                state = msgspec.msgpack.encode(
                    [m.dump(s) for m, s in zip(self._measures, states, strict=True)]
                )
                written.append(StoredCell(dims, start, changed_at, state, level))
        return written

    def _merge_children(
        self, key: RollupKey, cells: Sequence[HasStates], starts: Sequence[int]
    ) -> tuple[list[Any], int]:
        """The merge of ``cells`` (in bucket order), as :meth:`merged` computes it, resumed
        from the kept merge of the first children when none of them changed since.

        Most commits change the last few buckets of a week or month (events mostly come in
        time order): the merge of the others is loaded instead of merged again. The kept merge
        is a serialised copy, so resuming from it gives the very states merging them all in
        order gives. Keeping it costs a serialisation, so it is kept only for roll-up cells
        refreshed at least ``PREFIX_AFTER`` times before (a live view's current week and month,
        not each month of a rebuild, which two or three commits touch).
        """
        stamps = tuple(zip(starts, (cell.changed_at for cell in cells), strict=True))
        measures = self._measures
        prefix = self._prefixes.get(key)
        done = 0
        if (
            prefix is not None
            and len(prefix[0]) < len(stamps)
            and (stamps[: len(prefix[0])] == prefix[0])
        ):
            done = len(prefix[0])
            states = [m.load(raw) for m, raw in zip(measures, prefix[1], strict=True)]
            self.resumed += 1
        else:
            states = [m.new() for m in measures]
        last = len(cells) - 1
        self._merge_into(states, cells[done:last])
        refreshes = self._refreshes[key] = self._refreshes.get(key, 0) + 1
        if last > done and refreshes > PREFIX_AFTER:
            self._prefixes[key] = (
                stamps[:last],
                [m.dump(state) for m, state in zip(measures, states, strict=True)],
            )
        self._merge_into(states, cells[last:])
        return states, max((cell.changed_at for cell in cells), default=0)

    def _merge_into(self, states: list[Any], cells: Sequence[HasStates]) -> None:
        for index, measure in enumerate(self._measures):
            merge, into = measure.merge, states[index]
            for cell in cells:
                merge(into, cell.states[index])

    def merged(self, cells: Sequence[HasStates]) -> tuple[list[Any], int]:
        """Fresh states holding the merge of ``cells`` (in the given order)."""
        states = [m.new() for m in self._measures]
        for index, measure in enumerate(self._measures):
            merge, into = measure.merge, states[index]
            for cell in cells:
                merge(into, cell.states[index])
        return states, max((cell.changed_at for cell in cells), default=0)


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

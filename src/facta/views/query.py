"""Reading a view: its cells merged into the groups a query asks for, as pyarrow tables.

Every query reads the committed state of the view's current generation (never the maintainer's
memory), keeps the cells matching ``where`` (dimension = value or IN list) and the half-open
event-time range ``[start, end)``, and merges cells into coarser groups when ``group_by`` names
a subset of the dimensions — states merge, so nobody averages averages or medians. Each result
carries the position the view had applied and its definition hash in the schema metadata.

Cells come from the reader's cache (:mod:`facta.views.cellcache`); a time range reads whole
calendar roll-up cells where they fit (:meth:`ViewSnapshot.plan`, :mod:`facta.views.rollups`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import msgspec
import pyarrow as pa

from facta.collector import collector_paused
from facta.views import calendar
from facta.views.cellcache import ALL_TIME, Entry, LevelCells, ViewCache
from facta.views.compile import CompiledView, compile_view
from facta.views.definition import ViewDefinition
from facta.views.grouping import ROLLUP
from facta.views.measures import Measure, merged_states
from facta.views.rollups import chain, pieces
from facta.views.store import BASE_LEVEL, Generation, StoredCell, ViewStore

Where = Mapping[str, Any]


class ViewNotFound(LookupError):
    def __init__(self, view: str) -> None:
        super().__init__(f"no view named {view!r} has been built")
        self.view = view


class ViewTimeout(TimeoutError):
    def __init__(self, view: str, wanted: int, reached: int, seconds: float) -> None:
        super().__init__(
            f"view {view!r} had applied position {reached}, not {wanted}, after {seconds:g} s"
        )


@dataclasses.dataclass(slots=True)
class Merged:
    """Merged states of one output group, and the latest position any of its cells changed.

    ``shared``: the states are a cached cell's own (the group is that one cell) — read them,
    never merge into them.
    """

    states: list[Any]
    changed_at: int
    shared: bool = False
    source: tuple[LevelCells, int] | None = None  # the cached cell, while shared

    def memo(self, what: Any, compute: Callable[[], Any]) -> Any:
        """``compute()``, kept with the cached cell if this group is one cell."""
        if self.shared and self.source is not None:
            cells, slot = self.source
            return cells.memo(slot, what, compute)
        return compute()


def fresh_copy(
    measures: Sequence[Measure], states: Sequence[Any], only: set[int] | None = None
) -> list[Any]:
    """New states equal to ``states`` (those in ``only``, if given; the others ``None``)."""
    return merged_states(measures, [states], only)


def finalized(measures: Sequence[Measure], states: Sequence[Any]) -> dict[str, Any]:
    """Every output value of a group's states."""
    values: dict[str, Any] = {}
    for measure, state in zip(measures, states, strict=True):
        values.update(measure.finalize(state))
    return values


_COMPILED: dict[tuple[str, str, str], CompiledView] = {}


def _compiled(generation: Generation) -> CompiledView:
    """The compiled view of a generation. The definition hash covers everything a query
    depends on (measure order included; not the description)."""
    key = (generation.view, generation.definition_hash, generation.created_at)
    return compiled_generation(key, lambda: generation.definition)


def compiled_generation(key: tuple[str, str, str], definition: Callable[[], Any]) -> CompiledView:
    """The compiled view stored under ``key`` = (view, definition hash, generation created at),
    compiled from ``definition()`` the first time; kept for every reader of the process."""
    found = _COMPILED.get(key)
    if found is None:
        if len(_COMPILED) >= 64:
            _COMPILED.clear()
        found = _COMPILED[key] = compile_view(ViewDefinition.model_validate(definition()))
    return found


def epoch_seconds(value: datetime | int | float | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"a query time needs a time zone, found naive {value.isoformat()}")
        return int(value.timestamp())
    return int(value)


class ViewSnapshot:
    """A handle on a view's committed state, the source of every query shape.

    Each query reads the latest commit in one read transaction and stamps its result with the
    position and definition hash of that commit (``position`` is updated to match).
    """

    def __init__(self, store: ViewStore, generation: Generation) -> None:
        self.store = store
        self.ends_by: int | None = None
        self._pinned = False
        self._use(generation)

    def as_of(
        self,
        *,
        event_time: datetime | int | None = None,
        position: int | None = None,
        log: str | os.PathLike[str] | None = None,
    ) -> ViewSnapshot:
        """The view as of an event time, or exactly as it was at a log position.

        ``event_time=T``: the same view, merging only buckets that end at or before T (a
        bucket still open at T is left out whole). Events recorded after T but belonging to
        earlier buckets are included; for that, see ``engine.state_known_at``.

        ``position=P``: exactly the state the view had at checkpoint P — its nearest history
        snapshot at or before P, then the log replayed from there to P, in memory. ``log`` is
        the log's path (default: this store's file name without ``.views.db``).
        """
        if position is not None:
            from facta.views.history import state_at

            if log is None:
                if not self.store.path.endswith(".views.db"):
                    raise ValueError(
                        f"view {self.view.name!r}: as_of(position=...) needs log= for a store "
                        f"not beside its log ({self.store.path!r})"
                    )
                log = self.store.path[: -len(".views.db")]
            replayed = state_at(log, self.store, self.view.name, position)
            generation = replayed.current(self.view.name)
            assert generation is not None
            past = ViewSnapshot(replayed, generation)
            past.ends_by = self.ends_by
            return past if event_time is None else past.as_of(event_time=event_time)
        if event_time is None:
            raise ValueError("as_of needs event_time= or position=")
        if self.view.definition.bucket is None:
            raise ValueError(f"view {self.view.name!r} has no event-time bucket")
        other = ViewSnapshot(self.store, self.info)
        other.ends_by = epoch_seconds(event_time)
        return other

    def _use(self, generation: Generation) -> None:
        self.info = generation
        self.view = _compiled(generation)
        self.position = generation.checkpoint
        self.definition_hash = generation.definition_hash

    def _refresh(self) -> None:
        current = self.store.current(self.info.view)
        if current is None:
            raise ViewNotFound(self.info.view)
        self._use(current)

    @property
    def dimensions(self) -> tuple[str, ...]:
        return self.view.definition.dimensions

    def cells(
        self,
        where: Where | None = None,
        start: datetime | int | None = None,
        end: datetime | int | None = None,
    ) -> list[Entry]:
        """(dimension values, bucket, changed_at, states) of every bucket cell matching
        ``where`` and the time range, as cached: callers must not modify the states."""
        with self.pinned():
            level = self._cached().level(BASE_LEVEL)
            slots = level.select(self._allowed(where), epoch_seconds(start), epoch_seconds(end))
            return [level.entries[slot] for slot in slots.tolist()]

    def _allowed(self, where: Where | None) -> dict[int, set[Any]]:
        """``where`` as the allowed values of each named dimension (by index)."""
        allowed = {}
        for name, wanted in (where or {}).items():
            if name not in self.dimensions:
                raise ValueError(
                    f"view {self.view.name!r}: where names {name!r}, which is not a dimension "
                    f"(dimensions: {', '.join(self.dimensions)})"
                )
            values = wanted if isinstance(wanted, list | tuple | set | frozenset) else [wanted]
            allowed[self.dimensions.index(name)] = set(values)
        return allowed

    def _cached(self) -> ViewCache:
        """Decoded cells, kept with the store and refreshed incrementally.

        A cell rewritten after checkpoint C has ``changed_at`` > C, so a refresh reads only the
        cells changed since the cached checkpoint. Must run inside the read transaction.
        """
        cache = self.store.cache.get(self.view.name)
        if (
            not isinstance(cache, ViewCache)
            or cache.generation != self.info.generation
            or cache.created_at != self.info.created_at
            or cache.checkpoint > self.position
        ):
            cache = ViewCache(
                self.info.generation,
                self.info.created_at,
                -1,
                len(self.dimensions),
                functools.partial(_decoded, self.view.measures),
            )
            self.store.cache[self.view.name] = cache
        if cache.checkpoint != self.position:
            for cell in self.store.cells(
                self.view.name, self.info.generation, changed_after=cache.checkpoint, level=None
            ):
                level = cell.level
                if level == BASE_LEVEL and cell.bucket == ROLLUP:
                    level = ALL_TIME
                cache.add(level, cell.dims, cell.bucket, cell)
            cache.checkpoint = self.position
        return cache

    def plan(
        self,
        start: int | None,
        end: int | None,
        *,
        by_bucket: bool = False,
        every: str | None = None,
        rollups: bool = True,
    ) -> list[tuple[str, int | None, int | None]]:
        """Which cached cells a query reads: (level, from, to) — cells of that level whose
        bucket start is in ``[from, to)``. Over all time, the all-time roll-up cells; over a
        range, whole calendar roll-up cells in the middle and bucket cells at the edges
        (``rollups=False``: bucket cells only). ``every`` (with ``by_bucket``) caps the roll-ups
        at that width, so each result bucket is whole cells."""
        bucket = self.view.definition.bucket
        if bucket is None:
            return [(BASE_LEVEL, start, end)]
        if self.ends_by is not None:
            # A bucket has ended by T iff it starts before the bucket holding T.
            closed = calendar.floor(self.ends_by, bucket.width, bucket.timezone)
            end = closed if end is None else min(end, closed)
        if not by_bucket and start is None and end is None and rollups:
            return [(ALL_TIME, None, None)]
        if not rollups or (by_bucket and (every is None or every == bucket.width)):
            return [(BASE_LEVEL, start, end)]
        span = None if start is None or end is None else end - start
        levels = chain(bucket.width, every if by_bucket else None, span)
        return pieces(start, end, levels, bucket.timezone)

    def merge(
        self,
        *,
        where: Where | None = None,
        start: datetime | int | None = None,
        end: datetime | int | None = None,
        group_by: Sequence[str] | None = None,
        by_bucket: bool = False,
        only: set[int] | None = None,
        keys: set[tuple[Any, ...]] | None = None,
        every: str | None = None,
        rollups: bool = True,
    ) -> dict[tuple[Any, ...], Merged]:
        """Cells merged into groups of ``group_by`` (default: every dimension), and per bucket
        if ``by_bucket`` (the bucket start is then the key's last element).

        ``only`` merges just the measures at those indices (the others may hold ``None``);
        ``keys`` keeps just those groups (with their bucket, if ``by_bucket``). With ``every``
        (and ``by_bucket``) the result may hold whole roll-up cells of that width, keyed by
        their start, beside bucket cells: the caller floors bucket starts to ``every``.
        ``rollups=False`` merges bucket cells only (what roll-ups are checked against).
        Inside :meth:`pinned`, every merge sees the same commit.
        """
        with self.pinned():
            return self._merge(where, start, end, group_by, by_bucket, only, keys, every, rollups)

    @contextlib.contextmanager
    def pinned(self) -> Iterator[None]:
        """Read one commit for every query made inside the block (with the cyclic garbage
        collector paused: see :mod:`facta.collector`)."""
        if self._pinned:
            yield
            return
        with collector_paused(), self.store.reading():
            self._refresh()
            self._pinned = True
            try:
                yield
            finally:
                self._pinned = False

    def _merge(
        self,
        where: Where | None,
        start: datetime | int | None,
        end: datetime | int | None,
        group_by: Sequence[str] | None,
        by_bucket: bool,
        only: set[int] | None = None,
        keys: set[tuple[Any, ...]] | None = None,
        every: str | None = None,
        rollups: bool = True,
    ) -> dict[tuple[Any, ...], Merged]:
        names = tuple(self.dimensions if group_by is None else group_by)
        for name in names:
            if name not in self.dimensions:
                raise ValueError(
                    f"view {self.view.name!r}: cannot group by {name!r}, which is not a dimension"
                )
        picks = [self.dimensions.index(n) for n in names]
        measures = self.view.measures
        allowed = self._allowed(where)
        cache = self._cached()
        plan = self.plan(
            epoch_seconds(start),
            epoch_seconds(end),
            by_bucket=by_bucket,
            every=every,
            rollups=rollups,
        )
        # First which cells each group merges, then each group's states: one cell is read as
        # it is; several are merged once per set of cells (see ViewCache.merged).
        members: dict[tuple[Any, ...], list[tuple[str, LevelCells, int]]] = {}
        for level_name, low, high in plan:
            level = cache.existing(level_name)
            if level is None:
                continue
            entries = level.entries
            for slot in level.select(allowed, low, high).tolist():
                dims = entries[slot][0]
                key: tuple[Any, ...] = tuple(dims[i] for i in picks)
                if by_bucket:
                    key = (*key, entries[slot][1])
                if keys is not None and key not in keys:
                    continue
                members.setdefault(key, []).append((level_name, level, slot))
        groups: dict[tuple[Any, ...], Merged] = {}
        wanted = None if only is None else frozenset(only)
        for key, cells in members.items():
            if len(cells) == 1:
                _, level, slot = cells[0]
                _, _, changed_at, states = level.entries[slot]
                # One cell: borrow its states (whoever merges into them copies them first).
                groups[key] = Merged(states, changed_at, True, (level, slot))
                continue
            named = (wanted, tuple((n, s, lv.entries[s][2]) for n, lv, s in cells))
            states = cache.merged(named, functools.partial(_merge_cells, measures, cells, only))
            changed_at = max(lv.entries[s][2] for _, lv, s in cells)
            groups[key] = Merged(states, changed_at, True)
        return groups

    def stamp(self, table: pa.Table) -> pa.Table:
        metadata = {
            b"facta.view": self.view.name.encode(),
            b"facta.position": str(self.position).encode(),
            b"facta.definition_hash": self.definition_hash.encode(),
        }
        if self.ends_by is not None:
            metadata[b"facta.as_of_event_time"] = str(self.ends_by).encode()
        return table.replace_schema_metadata(metadata)

    def table(
        self,
        groups: Mapping[tuple[Any, ...], Merged],
        names: Sequence[str],
        *,
        bucket: bool = False,
        rows: Sequence[tuple[Any, ...]] | None = None,
    ) -> pa.Table:
        """Finalised measures of ``groups`` as a table (in ``rows`` order, if given)."""
        measures = self.view.measures
        output = self.view.output_types()
        keys = list(groups) if rows is None else list(rows)
        columns: dict[str, list[Any]] = {name: [] for name in names}
        if bucket:
            columns["bucket"] = []
        for name in output:
            columns[name] = []
        columns["changed_at"] = []
        for key in keys:
            for index, name in enumerate(names):
                columns[name].append(key[index])
            if bucket:
                columns["bucket"].append(key[len(names)])
            merged = groups.get(key)
            values: dict[str, Any] = {}
            if merged is None:
                values = {name: None for name in output}
                for measure in measures:
                    if measure.kind == "count":
                        values[measure.name] = 0
            else:
                values = merged.memo("row", functools.partial(finalized, measures, merged.states))
            for name in output:
                columns[name].append(values[name])
            columns["changed_at"].append(None if merged is None else merged.changed_at)
        fields = [pa.field(n, self.view.dimension_type(n)) for n in names]
        if bucket:
            fields.append(pa.field("bucket", pa.timestamp("s", tz="UTC")))
        fields += [pa.field(n, t) for n, t in output.items()]
        fields.append(pa.field("changed_at", pa.int64()))
        schema = pa.schema(fields)
        return self.stamp(
            pa.table({f.name: pa.array(columns[f.name], f.type) for f in fields}, schema=schema)
        )


def open_snapshot(
    store: ViewStore,
    view: str,
    *,
    min_position: int | None = None,
    timeout: float = 5.0,
    poll: float = 0.005,
) -> ViewSnapshot:
    """The view's committed state; with ``min_position``, wait until it has applied it (a view
    not built yet is waited for too)."""
    deadline = time.monotonic() + timeout
    while True:
        generation = store.current(view)
        if generation is None and min_position is None:
            raise ViewNotFound(view)
        if generation is not None and (
            min_position is None or generation.checkpoint >= min_position
        ):
            return ViewSnapshot(store, generation)
        if time.monotonic() >= deadline:
            # A view not built yet has applied nothing: waiting for it is waiting for P.
            reached = 0 if generation is None else generation.checkpoint
            raise ViewTimeout(view, min_position or 0, reached, timeout)
        time.sleep(poll)


def _merge_cells(
    measures: Sequence[Measure],
    cells: Sequence[tuple[str, LevelCells, int]],
    only: set[int] | None,
) -> list[Any]:
    """Fresh states holding the merge of ``cells`` in order (measures not in ``only``: None)."""
    return merged_states(measures, [level.entries[slot][3] for _, level, slot in cells], only)


def _decoded(measures: Sequence[Measure], cell: StoredCell) -> tuple[str, Entry]:
    raw = msgspec.msgpack.decode(cell.state)
    states = [m.load(r) for m, r in zip(measures, raw, strict=True)]
    return cell.dims, (json.loads(cell.dims), cell.bucket, cell.changed_at, states)

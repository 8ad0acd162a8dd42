"""Reading a view: its cells merged into the groups a query asks for, as pyarrow tables.

Every query reads the committed state of the view's current generation (never the maintainer's
memory), keeps the cells matching ``where`` (dimension = value or IN list) and the half-open
event-time range ``[start, end)``, and merges cells into coarser groups when ``group_by`` names
a subset of the dimensions — states merge, so nobody averages averages or medians. Each result
carries the position the view had applied and its definition hash in the schema metadata.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import json
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import msgspec
import pyarrow as pa

from facta.views import calendar
from facta.views.collector import collector_paused
from facta.views.compile import CompiledView, compile_view
from facta.views.definition import ViewDefinition
from facta.views.grouping import ROLLUP, dims_text
from facta.views.store import Generation, ViewStore

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
class CellCache:
    """The decoded cells of one view generation, as of ``checkpoint``."""

    generation: int
    created_at: str
    checkpoint: int
    cells: dict[tuple[str, int], tuple[list[Any], int, int, list[Any]]]
    by_dims: dict[str, list[tuple[str, int]]]
    rollups: list[tuple[str, int]]


@dataclasses.dataclass(slots=True)
class Merged:
    """Merged states of one output group, and the latest position any of its cells changed."""

    states: list[Any]
    changed_at: int


@functools.lru_cache(maxsize=64)
def _compiled(definition_json: str) -> CompiledView:
    return compile_view(ViewDefinition.model_validate(json.loads(definition_json)))


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

    def as_of(self, *, event_time: datetime | int) -> ViewSnapshot:
        """The same view, merging only buckets that end at or before ``event_time``.

        Buckets are on event time: a bucket still open at ``event_time`` is left out whole.
        (Events recorded after ``event_time`` but belonging to earlier buckets are included;
        facta does not yet offer ``known_at``.)
        """
        if self.view.definition.bucket is None:
            raise ValueError(f"view {self.view.name!r} has no event-time bucket")
        other = ViewSnapshot(self.store, self.info)
        other.ends_by = epoch_seconds(event_time)
        return other

    def _use(self, generation: Generation) -> None:
        self.info = generation
        self.view = _compiled(json.dumps(generation.definition))  # measure order matters
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
    ) -> list[tuple[list[Any], int, int, list[Any]]]:
        """(dimension values, bucket, changed_at, states) of every bucket cell matching
        ``where`` and the time range, as cached: callers must not modify the states."""
        with self.pinned():
            return list(self._cells(where, epoch_seconds(start), epoch_seconds(end)))

    def _cells(
        self, where: Where | None, start: int | None, end: int | None, rollup: bool = False
    ) -> Iterator[tuple[list[Any], int, int, list[Any]]]:
        """(dimension values, bucket, changed_at, states) of every matching cell: bucket cells,
        or with ``rollup`` the all-time cell of each group."""
        allowed = {}
        for name, wanted in (where or {}).items():
            if name not in self.dimensions:
                raise ValueError(
                    f"view {self.view.name!r}: where names {name!r}, which is not a dimension "
                    f"(dimensions: {', '.join(self.dimensions)})"
                )
            values = wanted if isinstance(wanted, list | tuple | set | frozenset) else [wanted]
            allowed[self.dimensions.index(name)] = set(values)
        cells = self._cached()
        candidates: Iterable[tuple[list[Any], int, int, list[Any]]] = cells.values()
        if rollup:
            candidates = [cells[key] for key in self.store.cache[self.view.name].rollups]
        if self.dimensions and len(allowed) == len(self.dimensions):
            # Every dimension is pinned: look the groups up instead of scanning every cell.
            index = self.store.cache[self.view.name].by_dims
            texts = (
                dims_text(v) for v in itertools.product(*(allowed[i] for i in range(len(allowed))))
            )
            candidates = [cells[key] for text in texts for key in index.get(text, ())]
        for dims, bucket, changed_at, states in candidates:
            if (bucket == ROLLUP) != rollup:
                continue
            if start is not None and bucket < start:
                continue
            if end is not None and bucket >= end:
                continue
            if any(dims[i] not in values for i, values in allowed.items()):
                continue
            yield dims, bucket, changed_at, states

    def _cached(self) -> dict[tuple[str, int], tuple[list[Any], int, int, list[Any]]]:
        """Decoded cells, kept with the store and refreshed incrementally.

        A cell rewritten after checkpoint C has ``changed_at`` > C, so a refresh reads only the
        cells changed since the cached checkpoint. Must run inside the read transaction.
        """
        cache = self.store.cache.get(self.view.name)
        if (
            cache is None
            or cache.generation != self.info.generation
            or cache.created_at != self.info.created_at
            or cache.checkpoint > self.position
        ):
            cache = CellCache(self.info.generation, self.info.created_at, -1, {}, {}, [])
            self.store.cache[self.view.name] = cache
        if cache.checkpoint != self.position:
            measures = self.view.measures
            for cell in self.store.cells(
                self.view.name, self.info.generation, changed_after=cache.checkpoint
            ):
                raw = msgspec.msgpack.decode(cell.state)
                states = [m.load(r) for m, r in zip(measures, raw, strict=True)]
                dims = json.loads(cell.dims)
                key = (cell.dims, cell.bucket)
                if key not in cache.cells:
                    cache.by_dims.setdefault(cell.dims, []).append(key)
                    if cell.bucket == ROLLUP:
                        cache.rollups.append(key)
                cache.cells[key] = (dims, cell.bucket, cell.changed_at, states)
            cache.checkpoint = self.position
        return cache.cells

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
    ) -> dict[tuple[Any, ...], Merged]:
        """Cells merged into groups of ``group_by`` (default: every dimension), and per bucket
        if ``by_bucket`` (the bucket start is then the key's last element).

        ``only`` merges just the measures at those indices (the others hold ``None``); ``keys``
        keeps just those groups (with their bucket, if ``by_bucket``). Inside :meth:`pinned`,
        every merge sees the same commit.
        """
        if self._pinned:
            return self._merge(where, start, end, group_by, by_bucket, only, keys)
        with self.pinned():
            return self._merge(where, start, end, group_by, by_bucket, only, keys)

    @contextlib.contextmanager
    def pinned(self) -> Iterator[None]:
        """Read one commit for every query made inside the block (with the cyclic garbage
        collector paused: see :mod:`facta.views.collector`)."""
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
    ) -> dict[tuple[Any, ...], Merged]:
        names = tuple(self.dimensions if group_by is None else group_by)
        for name in names:
            if name not in self.dimensions:
                raise ValueError(
                    f"view {self.view.name!r}: cannot group by {name!r}, which is not a dimension"
                )
        picks = [self.dimensions.index(n) for n in names]
        measures = self.view.measures
        groups: dict[tuple[Any, ...], Merged] = {}
        bucket_spec = self.view.definition.bucket
        # Over all time, a bucketed view's roll-up cells hold exactly the merge of its buckets.
        rollup = (
            bucket_spec is not None
            and not by_bucket
            and start is None
            and end is None
            and self.ends_by is None
        )
        for dims, bucket, changed_at, states in self._cells(
            where, epoch_seconds(start), epoch_seconds(end), rollup
        ):
            if (
                self.ends_by is not None
                and bucket_spec is not None
                and calendar.step(bucket, bucket_spec.width, bucket_spec.timezone) > self.ends_by
            ):
                continue
            key: tuple[Any, ...] = tuple(dims[i] for i in picks)
            if by_bucket:
                key = (*key, bucket)
            if keys is not None and key not in keys:
                continue
            merged = groups.get(key)
            if merged is None:
                # A fresh accumulator: the cached cell states are never modified. Measures
                # left out by ``only`` get none at all.
                fresh = [
                    m.new() if only is None or i in only else None for i, m in enumerate(measures)
                ]
                merged = groups[key] = Merged(fresh, changed_at)
            for index, (measure, into, other) in enumerate(
                zip(measures, merged.states, states, strict=True)
            ):
                if only is None or index in only:
                    measure.merge(into, other)
            merged.changed_at = max(merged.changed_at, changed_at)
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
                for measure, state in zip(measures, merged.states, strict=True):
                    values.update(measure.finalize(state))
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

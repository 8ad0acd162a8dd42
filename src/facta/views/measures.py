"""Measures: what a view computes per group and bucket, as mergeable states.

A :class:`Measure` is the extension point. It creates an empty state, folds a whole batch into
the states of the batch's groups (column-wise, never per event), merges two states, turns a
state into output values and into a compact serialisable form. ``merge`` must be associative:
the engine splits the log into batches and buckets, and queries merge buckets back together.

Null rule: ``count`` counts rows; every other measure skips null and NaN and reports its own
``n``. Undefined results (no values, variance of fewer than two, correlation with zero variance)
are ``None`` — never NaN or infinity.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar

import msgspec
import numpy as np
import pyarrow as pa

from facta.views.batch import Column, Floats, Groups, Ints, Objects, Segments, pair_codes
from facta.views.derived import gather_slices, merge_comoments, merge_moments, merge_pairs
from facta.views.moments import (
    CoMomentState,
    ExtremeState,
    MomentState,
    PositionedState,
    SumState,
    batch_comoments,
    batch_extremes,
    batch_moments,
    batch_positioned,
    batch_sums,
    check_int64,
)
from facta.views.sketches import DistinctState, QuantileState, TopKState

DEFAULT_QUANTILES = (0.25, 0.5, 0.75)
# Per state class: one getter of all its slots, in order (what ``Measure.dump`` writes).
_FIELDS: dict[type, operator.attrgetter[Any]] = {}


@dataclasses.dataclass(frozen=True, slots=True)
class Batch:
    """What measures see of a batch: grouped rows, named columns and each row's log position."""

    groups: Groups
    columns: Mapping[str, Column]
    positions: Ints
    order: Ints | None = None  # ``groups.sorted_rows()``, shared by the measures that sort
    # Per-batch results shared by measures over the same fields (mean and variance of one field).
    shared: dict[tuple[str, ...], Any] = dataclasses.field(default_factory=dict)

    def once(self, key: tuple[str, ...], compute: Callable[[], Any]) -> Any:
        """``compute()``, computed once per batch for ``key``."""
        found = self.shared.get(key)
        if found is None:
            found = self.shared[key] = compute()
        return found

    def segments(self, column: Column) -> Segments:
        """The column's present rows, segment by segment (group by group)."""
        return Segments.of(self.groups, column.present, self.order)


class Measure:
    """A named aggregate over zero, one or two fields. Subclasses implement one kind."""

    kind: ClassVar[str]
    fields_needed: ClassVar[int] = 1

    def __init__(self, name: str, fields: Sequence[str] = (), **params: Any) -> None:
        if len(fields) != self.fields_needed:
            raise ValueError(
                f"measure {name!r} of kind {self.kind} takes {self.fields_needed} field(s), "
                f"found {len(fields)}"
            )
        self.name = name
        self.fields = tuple(fields)
        self.params = params

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.fields!r})"

    def new(self) -> Any:
        raise NotImplementedError

    def prepare(self, batch: Batch) -> None:
        """Compute what ``update`` needs of the batch, without state (any thread may)."""

    def derive(self, batch: Batch, child: Batch, parents: Ints) -> None:
        """``prepare(batch)``, where each group ``parents[c]`` of ``batch`` is the union of the
        groups ``c`` of ``child``, an already prepared batch of the same rows: measures that can
        merge ``child``'s per-group results do so instead of reading the rows again (see
        ``derived``)."""
        self.prepare(batch)

    def update(self, states: Sequence[Any], batch: Batch) -> None:
        """Fold the batch into ``states[g]`` for each batch group ``g``."""
        raise NotImplementedError

    def merge(self, into: Any, other: Any) -> None:
        into.merge(other)

    def finalize(self, state: Any) -> dict[str, Any]:
        raise NotImplementedError

    def output_types(self) -> dict[str, pa.DataType]:
        return {self.name: pa.float64(), f"{self.name}_n": pa.int64()}

    def dump(self, state: Any) -> Any:
        fields = _FIELDS.get(type(state))
        if fields is None:
            fields = _FIELDS[type(state)] = operator.attrgetter(*state.__slots__)
        values = fields(state)
        return values if isinstance(values, tuple) else (values,)

    def dump_many(self, states: Sequence[Any]) -> list[Any]:
        """``[self.dump(s) for s in states]``, without one Python call per state where it can."""
        if not states or type(self).dump is not Measure.dump:
            return [self.dump(s) for s in states]
        kinds = set(map(type, states))
        if len(kinds) != 1:
            return [self.dump(s) for s in states]
        kind = kinds.pop()
        slots: tuple[str, ...] = getattr(kind, "__slots__")  # noqa: B009 (a type has none statically)
        fields = _FIELDS.get(kind)
        if fields is None:
            fields = _FIELDS[kind] = operator.attrgetter(*slots)
        if len(slots) == 1:
            return [(value,) for value in map(fields, states)]
        return list(map(fields, states))

    def load(self, raw: Any) -> Any:
        return type(self.new())(*raw)

    def column(self, batch: Batch, index: int = 0) -> Column:
        return batch.columns[self.fields[index]]


def finite(value: float | None) -> float | None:
    """A float that may leave facta: NaN and infinities become None."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


class Count(Measure):
    kind = "count"
    fields_needed = 0

    def new(self) -> SumState:
        return SumState()

    def update(self, states: Sequence[SumState], batch: Batch) -> None:
        for state, size in zip(states, batch.groups.sizes().tolist(), strict=False):
            state.n += size

    def finalize(self, state: SumState) -> dict[str, Any]:
        return {self.name: state.n}

    def output_types(self) -> dict[str, pa.DataType]:
        return {self.name: pa.int64()}


class Sum(Measure):
    kind = "sum"

    def new(self) -> SumState:
        return SumState()

    def prepare(self, batch: Batch) -> Any:
        return batch.once(
            ("sums", *self.fields), lambda: batch_sums(batch.groups, self.column(batch))
        )

    def update(self, states: Sequence[SumState], batch: Batch) -> None:
        counts, totals = self.prepare(batch)
        for g, (n, total) in enumerate(zip(counts, totals, strict=True)):
            if n:
                states[g].add(int(n), total)
                check_int64(g, states[g].total)

    def merge(self, into: SumState, other: SumState) -> None:
        into.merge(other)
        check_int64(0, into.total)

    def finalize(self, state: SumState) -> dict[str, Any]:
        value = state.value()
        return {
            self.name: value if isinstance(value, int) else finite(value),
            f"{self.name}_n": state.n,
        }

    def output_types(self) -> dict[str, pa.DataType]:
        integral = self.params.get("integer", False)
        return {self.name: pa.int64() if integral else pa.float64(), f"{self.name}_n": pa.int64()}


class Moments(Measure):
    """Mean, variance and standard deviation share one (n, mean, M2) state."""

    kind = "mean"
    statistic: ClassVar[str] = "mean"
    sample: ClassVar[bool] = True

    def new(self) -> MomentState:
        return MomentState()

    def merge(self, into: MomentState, other: MomentState) -> None:
        into.add(other.n, other.mean, other.m2)

    def prepare(self, batch: Batch) -> Any:
        return batch.once(
            ("moments", *self.fields), lambda: batch_moments(batch.groups, self.column(batch))
        )

    def derive(self, batch: Batch, child: Batch, parents: Ints) -> None:
        batch.once(
            ("moments", *self.fields),
            lambda: merge_moments(parents, batch.groups.count, self.prepare(child)),
        )

    def update(self, states: Sequence[MomentState], batch: Batch) -> None:
        counts, means, m2 = self.prepare(batch)
        present = np.flatnonzero(counts)
        for g, n, mean, m2_g in zip(
            present.tolist(),
            counts[present].tolist(),
            means[present].tolist(),
            m2[present].tolist(),
            strict=True,
        ):
            states[g].add(n, mean, m2_g)

    def finalize(self, state: MomentState) -> dict[str, Any]:
        if self.statistic == "mean":
            value = state.mean if state.n else None
        else:
            variance = state.variance(sample=self.sample)
            value = (
                variance
                if self.statistic == "variance" or variance is None
                else math.sqrt(variance)
            )
        return {self.name: finite(value), f"{self.name}_n": state.n}


class Variance(Moments):
    kind = "variance"
    statistic = "variance"


class VariancePop(Moments):
    kind = "variance_pop"
    statistic = "variance"
    sample = False


class Stddev(Moments):
    kind = "stddev"
    statistic = "stddev"


class StddevPop(Moments):
    kind = "stddev_pop"
    statistic = "stddev"
    sample = False


class Extreme(Measure):
    kind = "min"
    largest: ClassVar[bool] = False

    def new(self) -> ExtremeState:
        return ExtremeState()

    def update(self, states: Sequence[ExtremeState], batch: Batch) -> None:
        found = batch_extremes(batch.groups, self.column(batch), largest=self.largest)
        for state, part in zip(states, found, strict=True):
            state.merge(part, largest=self.largest)

    def merge(self, into: ExtremeState, other: ExtremeState) -> None:
        into.merge(other, largest=self.largest)

    def finalize(self, state: ExtremeState) -> dict[str, Any]:
        value = finite(state.value) if isinstance(state.value, float) else state.value
        return {self.name: value, f"{self.name}_n": state.n}

    def output_types(self) -> dict[str, pa.DataType]:
        value_type = self.params.get("value_type", pa.float64())
        return {self.name: value_type, f"{self.name}_n": pa.int64()}


class Max(Extreme):
    kind = "max"
    largest = True


class CoMoments(Measure):
    """Covariance and correlation over the rows where both fields are present."""

    kind = "covariance"
    fields_needed = 2
    sample: ClassVar[bool] = True

    def new(self) -> CoMomentState:
        return CoMomentState()

    def merge(self, into: CoMomentState, other: CoMomentState) -> None:
        into.add(other.n, other.mean_x, other.mean_y, other.m2_x, other.m2_y, other.c)

    def prepare(self, batch: Batch) -> Any:
        return batch.once(
            ("comoments", *self.fields),
            lambda: batch_comoments(batch.groups, self.column(batch, 0), self.column(batch, 1)),
        )

    def derive(self, batch: Batch, child: Batch, parents: Ints) -> None:
        batch.once(
            ("comoments", *self.fields),
            lambda: merge_comoments(parents, batch.groups.count, self.prepare(child)),
        )

    def update(self, states: Sequence[CoMomentState], batch: Batch) -> None:
        found = self.prepare(batch)
        present = np.flatnonzero(found[0])
        n, mean_x, mean_y, m2_x, m2_y, c = (part[present].tolist() for part in found)
        # Named, not star-unpacked: no list per group (a live page's hundred groups).
        for g, n_g, mx, my, m2x, m2y, c_g in zip(
            present.tolist(), n, mean_x, mean_y, m2_x, m2_y, c, strict=True
        ):
            states[g].add(n_g, mx, my, m2x, m2y, c_g)

    def finalize(self, state: CoMomentState) -> dict[str, Any]:
        return {self.name: finite(state.covariance(sample=self.sample)), f"{self.name}_n": state.n}


class CovariancePop(CoMoments):
    kind = "covariance_pop"
    sample = False


class Correlation(CoMoments):
    kind = "correlation"

    def finalize(self, state: CoMomentState) -> dict[str, Any]:
        return {self.name: finite(state.correlation()), f"{self.name}_n": state.n}


class Latest(Measure):
    kind = "latest"
    latest: ClassVar[bool] = True

    def new(self) -> PositionedState:
        return PositionedState()

    def update(self, states: Sequence[PositionedState], batch: Batch) -> None:
        parts = batch_positioned(
            batch.groups, self.column(batch), batch.positions, latest=self.latest
        )
        for state, part in zip(states, parts, strict=True):
            state.merge(part, latest=self.latest)

    def merge(self, into: PositionedState, other: PositionedState) -> None:
        into.merge(other, latest=self.latest)

    def finalize(self, state: PositionedState) -> dict[str, Any]:
        value = finite(state.value) if isinstance(state.value, float) else state.value
        return {self.name: value, f"{self.name}_position": state.position if state.n else None}

    def output_types(self) -> dict[str, pa.DataType]:
        value_type = self.params.get("value_type", pa.string())
        return {self.name: value_type, f"{self.name}_position": pa.int64()}


class First(Latest):
    kind = "first"
    latest = False


def encode_cells(measures: Sequence[Measure], cells: Sequence[Sequence[Any]]) -> list[bytes]:
    """Each cell's states (one per measure) serialised as one msgpack array, as the store keeps
    them: measure by measure over all the cells (a commit's tens of thousands of cells cost a
    few C calls per measure, not a Python call per cell and measure)."""
    if not cells:
        return []
    columns = [m.dump_many([c[i] for c in cells]) for i, m in enumerate(measures)]
    # A tuple encodes as the same msgpack array as a list.
    return list(map(_encode, zip(*columns, strict=True)))


# Maps and sets are written in sorted order (keys, items), so equal states give equal bytes
# whatever order they were filled in; sorting in the encoder costs half of sorting in Python
# first (a top-k state's counted items, a distinct state's kept items).
_encode = msgspec.msgpack.Encoder(order="deterministic").encode


def merged_states(
    measures: Sequence[Measure], many: Iterable[Sequence[Any]], only: set[int] | None = None
) -> list[Any]:
    """Fresh states holding the merge of ``many`` states, in order (the measures not in
    ``only``, if given, are ``None``)."""
    states = [m.new() if only is None or i in only else None for i, m in enumerate(measures)]
    for other in many:
        for index, measure in enumerate(measures):
            if only is None or index in only:
                measure.merge(states[index], other[index])
    return states


def quantile_label(q: float) -> str:
    """``0.5`` → ``p50``, ``0.999`` → ``p99_9``: a column name for a quantile."""
    text = f"{q * 100:.6f}".rstrip("0").rstrip(".")
    return "p" + text.replace(".", "_")


class SketchMeasure(Measure):
    """A measure whose state wraps a sketch that serialises itself (``state.dump()``, and
    ``dump_all`` for many states of its class)."""

    def dump(self, state: Any) -> Any:
        return state.dump()

    def dump_many(self, states: Sequence[Any]) -> list[Any]:
        return states[0].dump_all(states) if states else []


class Quantiles(SketchMeasure):
    kind = "quantiles"

    @functools.cached_property
    def k(self) -> int:
        return int(self.params.get("k", 200))

    @property
    def qs(self) -> tuple[float, ...]:
        return tuple(self.params.get("q", DEFAULT_QUANTILES))

    def new(self) -> QuantileState:
        return QuantileState(self.k)

    def prepare(self, batch: Batch) -> Any:
        return batch.once(("slices", *self.fields), lambda: self._slices(batch))

    def derive(self, batch: Batch, child: Batch, parents: Ints) -> None:
        def compute() -> _Slices:
            found: _Slices = self.prepare(child)
            ordered, starts = gather_slices(parents, batch.groups.count, found.values, found.starts)
            return _Slices(ordered, starts)

        batch.once(("slices", *self.fields), compute)

    def _slices(self, batch: Batch) -> _Slices:
        """The present values ordered by group, and where each group starts."""
        column = self.column(batch)
        segments = batch.segments(column)
        return _Slices(column.values[segments.rows].astype(np.float64), segments.starts)

    def update(self, states: Sequence[QuantileState], batch: Batch) -> None:
        found: _Slices = self.prepare(batch)
        # One bytes object of the ordered values; each group's slice of it costs less than a
        # numpy view, and most states keep it as it is (see ``QuantileState``).
        values = np.ascontiguousarray(found.values, dtype="<f8").tobytes()
        bounds = (found.starts * 8).tolist()
        for g in np.flatnonzero(np.diff(found.starts)).tolist():
            states[g].add(values[bounds[g] : bounds[g + 1]])

    def finalize(self, state: QuantileState) -> dict[str, Any]:
        values = state.quantiles(self.qs)
        out: dict[str, Any] = {
            f"{self.name}_{quantile_label(q)}": v for q, v in zip(self.qs, values, strict=True)
        }
        out[f"{self.name}_n"] = state.n
        return out

    def output_types(self) -> dict[str, pa.DataType]:
        types: dict[str, pa.DataType] = {
            f"{self.name}_{quantile_label(q)}": pa.float64() for q in self.qs
        }
        types[f"{self.name}_n"] = pa.int64()
        return types

    def load(self, raw: Any) -> QuantileState:
        return QuantileState.load(self.k, raw)


@dataclasses.dataclass(frozen=True, slots=True)
class _Slices:
    """A batch's present values of a field ordered by group; group ``g`` owns
    ``values[starts[g]:starts[g + 1]]``."""

    values: Floats
    starts: Ints


FREQUENT_ITEM = pa.struct(
    [("item", pa.string()), ("estimate", pa.int64()), ("lower", pa.int64()), ("upper", pa.int64())]
)


class TopK(SketchMeasure):
    kind = "top_k"

    @functools.cached_property
    def k(self) -> int:
        return int(self.params.get("k", 10))

    @functools.cached_property
    def lg_max_map(self) -> int:
        return int(self.params.get("lg_max_map", 10))

    def new(self) -> TopKState:
        return TopKState(self.lg_max_map)

    def prepare(self, batch: Batch) -> Any:
        return _pairs(batch, self.fields[0])

    def derive(self, batch: Batch, child: Batch, parents: Ints) -> None:
        _derive_pairs(batch, child, parents, self.fields[0])

    def update(self, states: Sequence[TopKState], batch: Batch) -> None:
        runs, items, counts = self.prepare(batch)
        # Pairs come sorted by group: one sketch lookup per group, then its items in order.
        for g, start, end in runs:
            states[g].add(items[start:end], counts[start:end])

    def finalize(self, state: TopKState) -> dict[str, Any]:
        items = [
            {"item": i.item, "estimate": i.estimate, "lower": i.lower, "upper": i.upper}
            for i in state.top(self.k)
        ]
        return {self.name: items, f"{self.name}_n": state.n}

    def output_types(self) -> dict[str, pa.DataType]:
        return {self.name: pa.list_(FREQUENT_ITEM), f"{self.name}_n": pa.int64()}

    def load(self, raw: Any) -> TopKState:
        return TopKState.load(self.lg_max_map, raw)


class Distinct(SketchMeasure):
    kind = "distinct"

    @functools.cached_property
    def lg_k(self) -> int:
        return int(self.params.get("lg_k", 12))

    def new(self) -> DistinctState:
        return DistinctState(self.lg_k)

    def prepare(self, batch: Batch) -> Any:
        return _pairs(batch, self.fields[0])

    def derive(self, batch: Batch, child: Batch, parents: Ints) -> None:
        _derive_pairs(batch, child, parents, self.fields[0])

    def update(self, states: Sequence[DistinctState], batch: Batch) -> None:
        runs, items, _ = self.prepare(batch)
        for g, start, end in runs:
            states[g].add(items[start:end])

    def finalize(self, state: DistinctState) -> dict[str, Any]:
        lower, upper = state.bounds(3)
        return {
            self.name: round(state.estimate()),
            f"{self.name}_lower": lower,
            f"{self.name}_upper": upper,
        }

    def output_types(self) -> dict[str, pa.DataType]:
        return {
            self.name: pa.int64(),
            f"{self.name}_lower": pa.float64(),
            f"{self.name}_upper": pa.float64(),
        }

    def load(self, raw: Any) -> DistinctState:
        return DistinctState.load(self.lg_k, raw)


def _pairs(batch: Batch, field: str) -> tuple[list[tuple[int, int, int]], list[str], list[int]]:
    """The distinct (group, value) pairs of a field: runs per group, values, counts."""

    def compute() -> tuple[list[tuple[int, int, int]], list[str], list[int]]:
        groups, codes, labels, counts = _pair_codes(batch, field)
        return _runs(groups), labels[codes].tolist(), counts.tolist()

    found: tuple[list[tuple[int, int, int]], list[str], list[int]] = batch.once(
        ("pairs", field), compute
    )
    return found


def _pair_codes(batch: Batch, field: str) -> tuple[Ints, Ints, Objects, Ints]:
    """The distinct (group, value code) pairs of a field, the values' labels and the counts."""
    found: tuple[Ints, Ints, Objects, Ints] = batch.once(
        ("pair_codes", field), lambda: pair_codes(batch.groups, batch.columns[field])
    )
    return found


def _derive_pairs(batch: Batch, child: Batch, parents: Ints, field: str) -> None:
    """``batch``'s pairs of ``field`` from ``child``'s (see ``Measure.derive``)."""

    def compute() -> tuple[Ints, Ints, Objects, Ints]:
        groups, codes, labels, counts = _pair_codes(child, field)
        merged = merge_pairs(parents, batch.groups.count, groups, codes, counts, len(labels))
        return merged[0], merged[1], labels, merged[2]

    batch.once(("pair_codes", field), compute)


def _runs(groups: Ints) -> list[tuple[int, int, int]]:
    """The runs of equal values of a sorted array: (value, start, end) each."""
    if groups.size == 0:
        return []
    starts = np.flatnonzero(np.diff(groups)) + 1
    bounds = np.concatenate(([0], starts, [groups.size])).tolist()
    values = groups[bounds[:-1]].tolist()
    return list(zip(values, bounds[:-1], bounds[1:], strict=True))


MEASURE_KINDS: dict[str, type[Measure]] = {
    cls.kind: cls
    for cls in (
        Count,
        Sum,
        Moments,
        Variance,
        VariancePop,
        Stddev,
        StddevPop,
        Extreme,
        Max,
        CoMoments,
        CovariancePop,
        Correlation,
        Latest,
        First,
        Quantiles,
        TopK,
        Distinct,
    )
}
NUMERIC_KINDS = frozenset(
    {"sum", "mean", "variance", "variance_pop", "stddev", "stddev_pop", "quantiles"}
    | {"covariance", "covariance_pop", "correlation"}
)


def make_measure(name: str, kind: str, fields: Sequence[str] = (), **params: Any) -> Measure:
    """Build a measure by kind name (``mean``, ``quantiles``, ``top_k``, …)."""
    try:
        cls = MEASURE_KINDS[kind]
    except KeyError:
        known = ", ".join(sorted(MEASURE_KINDS))
        raise ValueError(
            f"unknown measure kind {kind!r} for {name!r}: expected one of {known}"
        ) from None
    return cls(name, fields, **params)

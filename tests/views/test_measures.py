"""Measures fold batches column-wise, merge associatively and never report NaN."""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from facta.views.batch import Column, Groups
from facta.views.measures import Batch, Measure, encode_cells, make_measure
from facta.views.moments import SumOverflow

EXACT_KINDS = ("count", "sum", "min", "max", "latest", "first")
FLOAT_KINDS = ("mean", "variance", "variance_pop", "stddev", "stddev_pop")

floats = st.one_of(
    st.none(), st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), st.just(math.nan)
)
ints = st.one_of(st.none(), st.integers(min_value=-(2**40), max_value=2**40))


def int_column(values: Sequence[int | None]) -> Column:
    return Column.ints([0 if v is None else v for v in values], [v is not None for v in values])


def float_column(values: Sequence[float | None]) -> Column:
    return Column.floats([math.nan if v is None else v for v in values])


def fold(
    measure: Measure,
    column: Column | None,
    groups: Sequence[int],
    splits: Sequence[int] = (),
    column2: Column | None = None,
) -> list[Any]:
    """Fold rows into per-group states, one batch per split, positions 1..n."""
    count = max(groups, default=-1) + 1
    states = [measure.new() for _ in range(count)]
    bounds = [0, *sorted(set(splits)), len(groups)]
    for start, end in itertools.pairwise(bounds):
        if end <= start:
            continue
        codes = np.asarray(groups[start:end], dtype=np.int64)
        columns: dict[str, Column] = {}
        if column is not None:
            columns["x"] = Column(column.values[start:end], column.present[start:end])
        if column2 is not None:
            columns["y"] = Column(column2.values[start:end], column2.present[start:end])
        positions = np.arange(start + 1, end + 1, dtype=np.int64)
        measure.update(states, Batch(Groups(codes, count), columns, positions))
    return states


def fields_for(kind: str) -> tuple[str, ...]:
    return () if kind == "count" else ("x",)


def close(a: Any, b: Any, scale: float) -> bool:
    if a is None or b is None:
        return a is b
    if isinstance(a, float) or isinstance(b, float):
        return bool(abs(a - b) <= 1e-9 * max(scale, 1.0))
    return bool(a == b)


@settings(max_examples=60, deadline=None)
@given(
    data=st.lists(st.tuples(st.integers(0, 3), ints), min_size=1, max_size=60),
    splits=st.lists(st.integers(0, 60), max_size=5),
    kind=st.sampled_from(EXACT_KINDS),
)
def test_exact_measures_do_not_depend_on_batch_boundaries(
    data: list[tuple[int, int | None]], splits: list[int], kind: str
) -> None:
    groups = [g for g, _ in data]
    column = int_column([v for _, v in data])
    measure = make_measure("m", kind, fields_for(kind), integer=True)
    whole = fold(measure, column, groups)
    split = fold(measure, column, groups, splits)
    assert [measure.finalize(s) for s in whole] == [measure.finalize(s) for s in split]


@settings(max_examples=60, deadline=None)
@given(
    left=st.lists(st.tuples(st.integers(0, 2), floats), max_size=40),
    right=st.lists(st.tuples(st.integers(0, 2), floats), max_size=40),
    kind=st.sampled_from(EXACT_KINDS + FLOAT_KINDS),
)
def test_merge_equals_the_state_of_the_concatenated_inputs(
    left: list[tuple[int, float | None]], right: list[tuple[int, float | None]], kind: str
) -> None:
    measure = make_measure("m", kind, fields_for(kind))
    rows = left + right
    if not rows:
        return
    groups = [g for g, _ in rows] + [2]
    values = [v for _, v in rows] + [None]
    column = float_column(values)
    both = fold(measure, column, groups)
    # The same rows folded into two separate states (positions continue), then merged.
    merged = [measure.new() for _ in both]
    for states in (
        fold_part(measure, column, groups, 0, len(left)),
        fold_part(measure, column, groups, len(left), len(rows) + 1),
    ):
        for g, state in enumerate(states):
            measure.merge(merged[g], state)
    scale = sum(abs(v) for v in values if v is not None and not math.isnan(v)) ** 2 + 1
    for whole_state, merged_state in zip(both, merged, strict=True):
        expected, found = measure.finalize(whole_state), measure.finalize(merged_state)
        assert expected.keys() == found.keys()
        for key in expected:
            assert close(expected[key], found[key], scale), (key, expected, found)


def fold_part(
    measure: Measure, column: Column, groups: list[int], start: int, end: int
) -> list[Any]:
    count = max(groups) + 1
    states = [measure.new() for _ in range(count)]
    if end > start:
        codes = np.asarray(groups[start:end], dtype=np.int64)
        part = Column(column.values[start:end], column.present[start:end])
        positions = np.arange(start + 1, end + 1, dtype=np.int64)
        measure.update(states, Batch(Groups(codes, count), {"x": part}, positions))
    return states


@settings(max_examples=40, deadline=None)
@given(values=st.lists(floats, min_size=0, max_size=50), splits=st.lists(st.integers(0, 50)))
def test_moments_match_the_statistics_module(values: list[float | None], splits: list[int]) -> None:
    present = [v for v in values if v is not None and not math.isnan(v)]
    column = float_column(values)
    groups = [0] * len(values)
    if not values:
        return
    results = {
        kind: make_measure("m", kind, ("x",)).finalize(
            fold(make_measure("m", kind, ("x",)), column, groups, splits)[0]
        )["m"]
        for kind in ("mean", "variance", "variance_pop", "stddev", "sum", "min", "max")
    }
    scale = sum(abs(v) for v in present) + 1
    if not present:
        assert all(value is None for value in results.values())
        return
    assert close(results["sum"], math.fsum(present), scale)
    assert close(results["mean"], statistics.fmean(present), scale)
    assert results["min"] == min(present) and results["max"] == max(present)
    assert close(results["variance_pop"], statistics.pvariance(present), scale * scale)
    if len(present) < 2:
        assert results["variance"] is None and results["stddev"] is None
    else:
        assert close(results["variance"], statistics.variance(present), scale * scale)


def test_count_counts_rows_while_other_measures_skip_null_and_nan() -> None:
    column = float_column([1.0, None, math.nan, 3.0])
    groups = [0, 0, 0, 0]
    count = make_measure("c", "count")
    mean = make_measure("m", "mean", ("x",))
    assert count.finalize(fold(count, None, groups)[0]) == {"c": 4}
    assert mean.finalize(fold(mean, column, groups)[0]) == {"m": 2.0, "m_n": 2}


def test_undefined_results_are_null_never_nan() -> None:
    nothing = float_column([None, math.nan])
    groups = [0, 0]
    for kind in ("sum", "mean", "variance", "stddev", "min", "max", "latest"):
        measure = make_measure("m", kind, ("x",))
        assert measure.finalize(fold(measure, nothing, groups)[0])["m"] is None, kind
    single = float_column([5.0])
    variance = make_measure("v", "variance", ("x",))
    assert variance.finalize(fold(variance, single, [0])[0]) == {"v": None, "v_n": 1}
    correlation = make_measure("r", "correlation", ("x", "y"))
    flat = fold(correlation, float_column([1, 1, 1]), [0, 0, 0], column2=float_column([1, 2, 3]))
    assert correlation.finalize(flat[0]) == {"r": None, "r_n": 3}


def test_integer_sums_are_exact_and_overflow_names_the_group() -> None:
    big = 2**62
    measure = make_measure("s", "sum", ("x",), integer=True)
    states = fold(measure, int_column([big, 1, -big]), [0, 0, 0])
    assert measure.finalize(states[0]) == {"s": 1, "s_n": 3}
    with pytest.raises(SumOverflow) as caught:
        fold(measure, int_column([1, big, big]), [0, 1, 1])
    assert caught.value.group == 1
    assert caught.value.total == 2**63


def test_float_sums_are_compensated() -> None:
    measure = make_measure("s", "sum", ("x",))
    values = [1e16, 1.0, -1e16, 1.0] * 5
    states = fold(measure, float_column(values), [0] * len(values), splits=[1, 2, 3, 7, 11])
    assert measure.finalize(states[0])["s"] == 10.0


def test_covariance_and_correlation_use_rows_where_both_are_present() -> None:
    x = [1.0, 2.0, 3.0, 4.0, None, 10.0]
    y = [2.0, 4.1, 6.2, 7.9, 3.0, None]
    pairs = [(a, b) for a, b in zip(x, y, strict=True) if a is not None and b is not None]
    xs, ys = np.array(pairs).T
    for kind, expected in (
        ("covariance", float(np.cov(xs, ys)[0, 1])),
        ("covariance_pop", float(np.cov(xs, ys, ddof=0)[0, 1])),
        ("correlation", float(np.corrcoef(xs, ys)[0, 1])),
    ):
        measure = make_measure("c", kind, ("x", "y"))
        states = fold(measure, float_column(x), [0] * 6, splits=[2, 3], column2=float_column(y))
        result = measure.finalize(states[0])
        assert result["c_n"] == 4
        assert math.isclose(result["c"], expected, rel_tol=1e-12), kind


def test_latest_and_first_follow_log_position_not_arrival_within_a_batch() -> None:
    column = Column.objects(["a", None, "b", "c", None])
    groups = [0, 0, 1, 0, 1]
    latest = make_measure("l", "latest", ("x",))
    first = make_measure("f", "first", ("x",))
    assert [latest.finalize(s) for s in fold(latest, column, groups, splits=[2])] == [
        {"l": "c", "l_position": 4},
        {"l": "b", "l_position": 3},
    ]
    assert first.finalize(fold(first, column, groups)[0]) == {"f": "a", "f_position": 1}


@pytest.mark.parametrize("kind", [*EXACT_KINDS, *FLOAT_KINDS, "quantiles", "top_k", "distinct"])
def test_states_survive_serialisation(kind: str) -> None:
    measure = make_measure("m", kind, fields_for(kind))
    values = [float(v % 17) for v in range(200)] + [None]
    states = fold(measure, float_column(values), [v % 3 for v in range(201)], splits=[50])
    for state in states:
        raw = msgspec.msgpack.encode(measure.dump(state))
        again = measure.load(msgspec.msgpack.decode(raw))
        assert measure.finalize(again) == measure.finalize(state)


def test_a_commit_encodes_cells_as_their_states_dump_one_by_one() -> None:
    # encode_cells serialises measure by measure; the store must get the very bytes of the
    # per-cell encode (what older files hold, and what a restart decodes).
    kinds = [*EXACT_KINDS, *FLOAT_KINDS, "quantiles", "top_k", "distinct", "covariance"]
    measures = [
        make_measure(f"m{i}", kind, ("x", "y") if kind == "covariance" else fields_for(kind))
        for i, kind in enumerate(kinds)
    ]
    values = [float(v % 17) for v in range(200)] + [None]
    groups = [v % 3 for v in range(201)] + [4]  # group 3 has no rows: empty states
    column = float_column([*values, None])
    per_measure = [fold(m, column, groups, splits=[50], column2=column) for m in measures]
    distinct = measures[kinds.index("distinct")]
    distinct.merge(per_measure[kinds.index("distinct")][1], per_measure[kinds.index("distinct")][0])
    cells = [list(states) for states in zip(*per_measure, strict=True)]

    # What older files hold: kept distinct items as a sorted array, counted top-k items as a
    # map in item order.
    def as_stored(state: Any) -> Any:
        if isinstance(state, set):
            return sorted(state)
        return dict(sorted(state.items())) if isinstance(state, dict) else state

    expected = [
        msgspec.msgpack.encode([as_stored(m.dump(s)) for m, s in zip(measures, cell, strict=True)])
        for cell in cells
    ]
    assert encode_cells(measures, cells) == expected
    assert len(expected) == 5
    assert encode_cells(measures, []) == []
    kept = [m.dump(s) for m, s in zip(measures, cells[0], strict=True)]
    assert any(isinstance(d, set) and len(d) > 1 for d in kept)
    assert any(isinstance(d, dict) and len(d) > 1 for d in kept)


def test_quantiles_stay_within_the_sketch_rank_error() -> None:
    rng = np.random.default_rng(7)
    values = rng.normal(size=20_000)
    measure = make_measure("q", "quantiles", ("x",), k=200, q=(0.1, 0.5, 0.9))
    states = fold(measure, Column.floats(values), [0] * values.size, splits=range(0, 20_000, 997))
    ordered = np.sort(values)
    epsilon = states[0].rank_error()
    for q in (0.1, 0.5, 0.9):
        x = states[0].quantile(q)
        below = np.searchsorted(ordered, x, side="left") / ordered.size
        at_or_below = np.searchsorted(ordered, x, side="right") / ordered.size
        assert below - epsilon <= q <= at_or_below + epsilon


def test_distinct_and_top_k_are_fed_per_distinct_pair_with_weights() -> None:
    items = ["a"] * 50 + ["b"] * 30 + ["c"] * 5 + [None] * 3
    column = Column.objects(items)
    top = make_measure("t", "top_k", ("x",), k=2)
    distinct = make_measure("d", "distinct", ("x",))
    top_state = fold(top, column, [0] * len(items), splits=[20, 60])[0]
    result = top.finalize(top_state)
    assert [(i["item"], i["estimate"]) for i in result["t"]] == [("a", 50), ("b", 30)]
    assert result["t_n"] == 85
    assert distinct.finalize(fold(distinct, column, [0] * len(items))[0])["d"] == 3


def test_integral_floats_and_ints_are_the_same_sketch_item() -> None:
    distinct = make_measure("d", "distinct", ("x",))
    state = fold(distinct, Column.objects([1, 1.0, "1", 2.5]), [0, 0, 0, 0])[0]
    assert distinct.finalize(state)["d"] == 2


def test_sketch_measures_dump_many_states_as_each_dumps_itself() -> None:
    # dump_many skips the call for states that keep their inputs; sketched states, a distinct
    # state with an open union and empty states take the call.
    quantiles, top, distinct = (
        make_measure("q", "quantiles", ("x",)),
        make_measure("t", "top_k", ("x",)),
        make_measure("d", "distinct", ("x",)),
    )
    many = [f"item{i}" for i in range(300)]
    exact_q, sketched_q, empty_q = quantiles.new(), quantiles.new(), quantiles.new()
    exact_q.add(np.arange(5, dtype="<f8").tobytes())
    sketched_q.add(np.arange(500, dtype="<f8").tobytes())
    exact_t, sketched_t = top.new(), top.new()
    exact_t.add(["a", "b"], [2, 1])
    sketched_t.add(many, [1] * len(many))
    exact_d, sketched_d, merged_d = distinct.new(), distinct.new(), distinct.new()
    exact_d.add(["a", "b"])
    sketched_d.add(many)
    merged_d.add(many[:100])
    other = distinct.new()
    other.add(many[100:])
    distinct.merge(merged_d, other)
    cases = [
        (quantiles, [exact_q, sketched_q, empty_q]),
        (top, [exact_t, sketched_t, top.new()]),
        (distinct, [exact_d, sketched_d, merged_d, distinct.new()]),
    ]
    for measure, states in cases:
        expected = [msgspec.msgpack.encode(measure.dump(s)) for s in states]
        found = [msgspec.msgpack.encode(d) for d in measure.dump_many(states)]
        assert found == expected, measure.kind
        assert {type(d) for d in measure.dump_many(states)} >= {bytes}, measure.kind

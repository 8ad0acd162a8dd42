"""Sketch states keep small inputs as they are, and answer as the sketch of them would."""

from __future__ import annotations

import datasketches as ds
import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from facta.views.sketches import (
    EXACT_DISTINCT,
    EXACT_ITEMS,
    EXACT_VALUES_EXT,
    DistinctState,
    QuantileState,
    TopKState,
)

K = 16
chunks = st.lists(
    st.lists(st.floats(min_value=-1e9, max_value=1e9, allow_nan=False), min_size=1, max_size=12),
    max_size=5,
)
PROBES = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)


def fed(parts: list[list[float]]) -> QuantileState:
    state = QuantileState(K)
    for part in parts:
        state.update(np.asarray(part, dtype=np.float64))
    return state


def sketch_of(values: list[float]) -> object:
    sketch = ds.kll_doubles_sketch(K)
    if values:
        sketch.update(np.asarray(values, dtype=np.float64))
    return sketch


def answers(state: QuantileState) -> tuple[object, ...]:
    """Everything a query reads of a state (the sketch's answers for ranks and quantiles)."""
    ranks = tuple(state.rank(v, inclusive=i) for v in (-1.0, 0.0, 3.5) for i in (True, False))
    return (state.n, state.min(), state.max(), tuple(state.quantiles(PROBES)), ranks)


def roundtrip(state: QuantileState) -> QuantileState:
    raw = msgspec.msgpack.decode(msgspec.msgpack.encode([state.dump()]))[0]
    return QuantileState.load(K, raw)


@settings(max_examples=150, deadline=None)
@given(chunks)
def test_a_state_of_at_most_k_values_answers_exactly_as_a_sketch_of_them(
    parts: list[list[float]],
) -> None:
    values = [v for part in parts for v in part]
    state = fed(parts)
    sketch = sketch_of(values)
    assert state.n == len(values)
    if len(values) <= K:
        assert state.sketch is None  # kept as values, no sketch created
        assert len(state.exact) == 8 * len(values)
    else:
        assert state.exact == b""  # past k: one sketch holds everything
    if not values:
        assert state.quantiles(PROBES) == [None] * len(PROBES)
        assert state.min() is None and state.max() is None
        return
    if len(values) <= K:  # a KLL sketch of at most k values is exact: equal answers
        expected = [float(sketch.get_quantile(q)) for q in PROBES]  # type: ignore[attr-defined]
        assert state.quantiles(PROBES) == expected
    assert state.min() == min(values) and state.max() == max(values)
    assert roundtrip(state).n == state.n
    assert answers(roundtrip(state)) == answers(state)


@settings(max_examples=150, deadline=None)
@given(chunks, chunks, st.booleans())
def test_merging_holds_both_inputs_whichever_way_each_is_kept(
    left: list[list[float]], right: list[list[float]], right_as_sketch: bool
) -> None:
    into = fed(left)
    other = fed(right)
    right_values = [v for part in right for v in part]
    if right_as_sketch and right_values:
        other = QuantileState(K, sketch_of(right_values))
    into.merge(other)
    values = [v for part in left for v in part] + right_values
    assert into.n == len(values)
    if values:
        assert into.min() == min(values) and into.max() == max(values)
    if values and len(values) <= K and into.sketch is None:
        expected = [float(sketch_of(values).get_quantile(q)) for q in PROBES]  # type: ignore[attr-defined]
        assert into.quantiles(PROBES) == expected
    # What SQL sees is always the KLL binary format, which the library reads back.
    if values:
        blob = into.sketch_bytes()
        assert ds.kll_doubles_sketch.deserialize(blob).n == len(values)
    else:
        assert into.sketch_bytes() == b""


def test_a_stored_state_of_values_is_checked_when_loaded() -> None:
    with pytest.raises(ValueError, match="extension 7 of 8 bytes"):
        QuantileState.load(K, msgspec.msgpack.Ext(7, b"\0" * 8))
    with pytest.raises(ValueError, match="of 12 bytes"):
        QuantileState.load(K, msgspec.msgpack.Ext(EXACT_VALUES_EXT, b"\0" * 12))
    with pytest.raises(ValueError, match=f"at most {K} float64"):
        QuantileState.load(K, msgspec.msgpack.Ext(EXACT_VALUES_EXT, b"\0" * 8 * (K + 1)))


LG_K = 12
names = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1, max_size=6)
item_batches = st.lists(st.lists(names, max_size=50), max_size=4)


def distinct_of(batches: list[list[str]]) -> DistinctState:
    state = DistinctState(LG_K)
    for batch in batches:
        state.add(batch)
    return state


def stored(state: object) -> object:
    """A state's dump after the store's msgpack round trip."""
    return msgspec.msgpack.decode(msgspec.msgpack.encode([state.dump()]))[0]  # type: ignore[attr-defined]


@settings(max_examples=150, deadline=None)
@given(item_batches, item_batches, st.booleans())
def test_distinct_counts_exactly_while_small_and_merges_either_way(
    left: list[list[str]], right: list[list[str]], right_as_sketch: bool
) -> None:
    truth = {i for b in left + right for i in b}
    into = distinct_of(left)
    other = distinct_of(right)
    if right_as_sketch:
        sketch = ds.hll_sketch(LG_K, ds.tgt_hll_type.HLL_8)
        for item in {i for b in right for i in b}:
            sketch.update(item)
        other = DistinctState(LG_K, sketch)
    left_count = len({i for b in left for i in b})
    if left_count <= EXACT_DISTINCT and into.sketch is None:
        assert into.estimate() == left_count and into.bounds() == (left_count, left_count)
    into.merge(other)
    low, high = into.bounds(3)
    assert low <= len(truth) <= high
    again = DistinctState.load(LG_K, stored(into))
    assert again.estimate() == into.estimate()
    blob = into.sketch_bytes()
    if truth:
        assert ds.hll_sketch.deserialize(blob).get_estimate() == pytest.approx(len(truth), rel=0.05)
    else:
        assert blob == b""


def test_distinct_moves_to_a_sketch_past_its_limit() -> None:
    state = distinct_of([[f"tail{i}" for i in range(EXACT_DISTINCT)]])
    assert state.sketch is None and state.estimate() == EXACT_DISTINCT
    state.add(["one more"])
    assert state.exact is None and state.sketch is not None
    assert state.estimate() == pytest.approx(EXACT_DISTINCT + 1, rel=0.01)
    assert isinstance(state.dump(), bytes)


weighted = st.lists(
    st.dictionaries(names, st.integers(min_value=1, max_value=1000), max_size=40), max_size=4
)


def top_of(batches: list[dict[str, int]]) -> TopKState:
    state = TopKState(10)
    for batch in batches:
        state.add(list(batch), list(batch.values()))
    return state


@settings(max_examples=150, deadline=None)
@given(weighted, weighted, st.booleans())
def test_top_k_counts_exactly_while_small_and_merges_either_way(
    left: list[dict[str, int]], right: list[dict[str, int]], right_as_sketch: bool
) -> None:
    truth: dict[str, int] = {}
    for batch in left + right:
        for item, weight in batch.items():
            truth[item] = truth.get(item, 0) + weight
    into, other = top_of(left), top_of(right)
    if right_as_sketch:
        sketch = ds.frequent_strings_sketch(10)
        for batch in right:
            for item, weight in batch.items():
                sketch.update(item, weight)
        other = TopKState(10, sketch)
    into.merge(other)
    assert into.n == sum(truth.values())
    expected = sorted(truth.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    # Fewer than 768 items: the sketch counts exactly too, whichever way the state is kept.
    assert [(i.item, i.estimate, i.lower, i.upper) for i in into.top(5)] == [
        (item, weight, weight, weight) for item, weight in expected
    ]
    again = TopKState.load(10, stored(into))
    assert again.top(5) == into.top(5)
    for item, weight in truth.items():
        assert into.bounds(item) == (weight, weight)
    blob = into.sketch_bytes()
    if truth:
        assert ds.frequent_strings_sketch.deserialize(blob).total_weight == sum(truth.values())


def test_top_k_sums_an_item_given_twice_and_moves_to_a_sketch_past_its_limit() -> None:
    state = TopKState(10)
    state.add(["JFK", "JFK"], [2, 3])
    assert state.top(1)[0].estimate == 5
    state.add([f"A{i}" for i in range(EXACT_ITEMS)], [1] * EXACT_ITEMS)
    assert state.exact is None and state.sketch is not None
    assert state.top(1)[0].item == "JFK" and state.n == 5 + EXACT_ITEMS


def test_stored_small_states_are_checked_when_loaded() -> None:
    with pytest.raises(ValueError, match="at most 64 strings"):
        DistinctState.load(LG_K, [1, 2])
    with pytest.raises(ValueError, match="positive integer weights"):
        TopKState.load(10, {"JFK": -1})

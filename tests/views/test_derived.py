"""A large page's coarser levels (all time, days, weeks, months) derived from its bucket groups'
per-batch aggregates fold into the same cells as those levels prepared from the page's rows:
exact measures equal (floats up to rounding), sketches of the same size and extremes (top-k and
distinct sketches byte for byte: they see the same pairs in the same order)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from facta.log import SqliteLog
from facta.views import compile_view, load_definition
from facta.views.batch import Ints
from facta.views.compile import CompiledView
from facta.views.derived import gather_slices, merge_moments
from facta.views.grouping import alltime_parents, group_rows_parts, rollup_parents
from facta.views.measures import Measure
from facta.views.pipeline import BUCKET, Evaluated, Pipeline
from facta.views.prepared import Level, prepare
from facta.views.rollups import Rollups
from facta.views.source import LogReader
from tests.views.conftest import FAST
from tests.views.test_rollups import events, view_table

SKETCHES = {"quantiles", "top_k", "distinct"}


@pytest.fixture(scope="module")
def log_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("derived") / "log.db"
    with SqliteLog(path, FAST) as log:
        batch = events(3000)
        for start in range(0, len(batch), 500):
            log.append_sync(f"s{start}", batch[start : start + 500])
    yield path


def _page(path: Path, view: CompiledView) -> Evaluated:
    reader = LogReader(str(path), view.definition.source, view.log_columns())
    pipeline = Pipeline(view, str(path))
    try:
        evaluated = pipeline.evaluate(reader.read(0, 50_000).events)
    finally:
        reader.close()
        pipeline.close()
    assert evaluated is not None and evaluated.rows.num_rows == 3000
    return evaluated


def _cells(view: CompiledView, level: Level) -> dict[tuple[str, int], list[Any]]:
    """Each group's fresh states with the level folded in."""
    states = [[m.new() for m in view.measures] for _ in level.keys]
    for index, measure in enumerate(view.measures):
        measure.update([s[index] for s in states], level.batch)
    return dict(zip(level.keys, states, strict=True))


def _same_state(measure: Measure, mine: Any, theirs: Any, where: str) -> None:
    if measure.kind == "quantiles":
        assert (mine.n, mine.min(), mine.max()) == (theirs.n, theirs.min(), theirs.max()), where
        # k is above the page's size: both sketches hold every value, so quantiles agree too.
        for q in (0.1, 0.5, 0.9):
            assert mine.quantile(q) == theirs.quantile(q), where
        return
    if measure.kind in SKETCHES:
        assert measure.dump(mine) == measure.dump(theirs), where
        return
    for x, y in zip(measure.dump(mine), measure.dump(theirs), strict=True):
        if isinstance(x, float) and isinstance(y, float):
            assert math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-6), (where, x, y)
        else:
            assert x == y, (where, x, y)


def _compare(view: CompiledView, evaluated: Evaluated) -> int:
    """Compare the derived levels with the ones prepared from rows; return the cells compared."""
    rollups = Rollups(view)
    derived = prepare(view, evaluated, rollups)
    from_rows = prepare(view, evaluated, rollups, from_rows=True)
    assert [lv.target for lv in derived.levels] == [lv.target for lv in from_rows.levels]
    compared = 0
    for mine, theirs in zip(derived.levels[1:], from_rows.levels[1:], strict=True):
        assert mine.keys == theirs.keys and mine.changed_at == theirs.changed_at
        my_cells, their_cells = _cells(view, mine), _cells(view, theirs)
        for key, states in my_cells.items():
            for index, measure in enumerate(view.measures):
                where = f"{measure.name} in {mine.target or 'all-time'} cell {key}"
                _same_state(measure, states[index], their_cells[key][index], where)
            compared += 1
    return compared


@pytest.mark.parametrize("width", ["1h", "1d"])
def test_derived_levels_fold_into_the_cells_the_rows_give(log_path: Path, width: str) -> None:
    view = compile_view(load_definition(f"derived_{width}", view_table(width)))
    evaluated = _page(log_path, view)
    compared = _compare(view, evaluated)
    # All-time cells (6 groups) plus the roll-up levels' cells over 100 days.
    assert compared >= 6 + 6 * 14 + 6 * 3


def _broken_compare(path: Path) -> int:
    view = compile_view(load_definition("derived_broken", view_table("1d")))
    return _compare(view, _page(path, view))


def test_moments_merged_without_the_spread_of_the_means_are_caught(
    log_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def within_only(parents: Ints, count: int, moments: Any) -> Any:
        n, mean, _ = merge_moments(parents, count, moments)
        return n, mean, np.bincount(parents, weights=moments[2], minlength=count)

    monkeypatch.setattr("facta.views.measures.merge_moments", within_only)
    with pytest.raises(AssertionError, match="delay in all-time cell"):
        _broken_compare(log_path)


def test_quantile_values_of_a_lost_child_are_caught(
    log_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def drop_a_child(parents: Ints, count: int, ordered: Any, starts: Ints) -> Any:
        values, merged = gather_slices(parents, count, ordered, starts)
        child = int(np.flatnonzero(np.diff(starts))[0])  # the first child with values
        parent = int(parents[child])
        size = int(starts[child + 1] - starts[child])
        # It comes first among its parent's values (no child before it has any).
        lost = np.arange(merged[parent], merged[parent] + size)
        cut = merged.copy()
        cut[parent + 1 :] -= size
        return np.delete(values, lost), cut

    monkeypatch.setattr("facta.views.measures.gather_slices", drop_a_child)
    with pytest.raises(AssertionError, match="delay_q in all-time cell"):
        _broken_compare(log_path)


@pytest.mark.parametrize("width", ["1h", "1d"])
def test_coarse_groups_numbered_with_numpy_are_those_of_the_keys(
    log_path: Path, width: str
) -> None:
    view = compile_view(load_definition(f"parents_{width}", view_table(width)))
    rows = _page(log_path, view).rows
    _, keys, parts = group_rows_parts(rows, view.definition.dimensions, BUCKET)
    rollups = Rollups(view)
    cases = [(alltime_parents(parts), rollup_parents(keys))]
    cases += [
        (rollups.level_parents(lv, parts), rollups.parents(lv, keys)) for lv in rollups.levels
    ]
    for (parent, parent_keys), (expected, expected_keys) in cases:
        assert len(parent_keys) == len(expected_keys) == len(set(parent_keys))
        mine = [parent_keys[p] for p in parent.tolist()]
        assert mine == [expected_keys[p] for p in expected.tolist()]
        assert len(mine) == len(keys) > 100


def test_pages_with_their_texts_encoded_fold_into_the_same_cells(log_path: Path) -> None:
    # A page worker with time to spare encodes a page's text columns (``texts_encoded``); the
    # grouping, the pairs fed to top-k and distinct sketches, and so every cell are unchanged.
    view = compile_view(load_definition("encoded", view_table("1d")))
    evaluated = _page(log_path, view)
    encoded = Pipeline.texts_encoded(evaluated)
    assert pa.types.is_dictionary(encoded.rows.schema.field("tailnum").type)
    rollups = Rollups(view)
    plain_levels = prepare(view, evaluated, rollups).levels
    encoded_levels = prepare(view, encoded, rollups).levels
    compared = 0
    for mine, theirs in zip(encoded_levels, plain_levels, strict=True):
        assert (mine.target, mine.keys, mine.changed_at) == (
            theirs.target,
            theirs.keys,
            theirs.changed_at,
        )
        my_cells, their_cells = _cells(view, mine), _cells(view, theirs)
        for key, states in my_cells.items():
            for index, measure in enumerate(view.measures):
                where = f"{measure.name} in {mine.target or 'bucket'} cell {key}"
                assert measure.dump(states[index]) == measure.dump(their_cells[key][index]), where
            compared += 1
    assert compared >= 6 * 100

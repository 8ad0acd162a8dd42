"""A small page's plain-Python grouping and text encoding (stacked.py) agree with the Arrow and
numpy ones used for larger pages: every row in a group of the same key, the same codes and
sorted labels for text."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from facta.views.batch import Column
from facta.views.compile import compile_view
from facta.views.definition import load_definition
from facta.views.grouping import group_rows
from facta.views.pipeline import BUCKET
from facta.views.prepared import column_of
from facta.views.stacked import _python_groups, _python_texts, _small_column, _tiled
from tests.views.conftest import flights_view

_rows = st.lists(
    st.tuples(
        st.one_of(st.none(), st.sampled_from(["UA", "B6", "é", "", "AA"])),
        st.one_of(st.none(), st.integers(-3, 3)),
        st.one_of(st.none(), st.booleans()),
        st.sampled_from([0, 86_400, 172_800, -3600]),
    ),
    min_size=1,
    max_size=60,
)


def _table(rows: list[tuple[Any, ...]]) -> pa.Table:
    carrier, hour, late, start = zip(*rows, strict=True)
    return pa.table(
        {
            "carrier": pa.array(carrier, pa.string()),
            "hour": pa.array(hour, pa.int64()),
            "late": pa.array(late, pa.bool_()),
            BUCKET: pa.array(start, pa.int64()),
        }
    )


@settings(max_examples=200, deadline=None)
@given(rows=_rows)
def test_python_grouping_puts_each_row_in_the_group_arrow_does(rows: list[tuple[Any, ...]]) -> None:
    table = _table(rows)
    dimensions = ("carrier", "hour", "late")
    groups, keys = _python_groups(table, dimensions)
    expected_groups, expected_keys = group_rows(table, dimensions, BUCKET)
    assert groups.count == expected_groups.count == len(set(expected_keys))
    mine = [keys[g] for g in groups.inverse.tolist()]
    theirs = [expected_keys[g] for g in expected_groups.inverse.tolist()]
    assert mine == theirs


@settings(max_examples=200, deadline=None)
@given(texts=st.lists(st.one_of(st.none(), st.text(max_size=3)), min_size=1, max_size=60))
def test_python_text_encoding_is_arrows(texts: list[str | None]) -> None:
    column = pa.chunked_array([pa.array(texts, pa.string())])
    mine = _python_texts(column)
    theirs = Column.text_array(column.combine_chunks())
    assert mine.texts and theirs.texts
    assert mine.values.tolist() == theirs.values.tolist()
    assert np.array_equal(mine.present, theirs.present)
    assert mine.codes is not None and theirs.codes is not None
    assert np.array_equal(mine.codes, theirs.codes)
    assert mine.labels is not None and theirs.labels is not None
    assert mine.labels.tolist() == theirs.labels.tolist()


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(
        st.one_of(st.none(), st.floats(allow_nan=False), st.sampled_from([0.0, -0.0, 1e308])),
        min_size=1,
        max_size=60,
    ),
    chunks=st.integers(1, 3),
)
def test_a_small_double_column_is_column_ofs(values: list[float | None], chunks: int) -> None:
    view = compile_view(load_definition("delays", flights_view()))
    assert view.kinds["dep_delay"] == "float"
    cut = [len(values) * i // chunks for i in range(chunks + 1)]
    column = pa.chunked_array(
        [pa.array(values[a:b], pa.float64()) for a, b in itertools.pairwise(cut)],
        pa.float64(),
    )
    mine = _small_column(view, column, "dep_delay", True)
    theirs = column_of(view, column, "dep_delay")
    assert mine.values.dtype == theirs.values.dtype == np.float64
    assert np.array_equal(mine.values, theirs.values, equal_nan=True)
    assert np.array_equal(np.signbit(mine.values), np.signbit(theirs.values))
    assert np.array_equal(mine.present, theirs.present)
    assert mine.present.tolist() == [v is not None for v in values]


def test_tiled_repeats_like_numpy_tile() -> None:
    for values in (np.arange(5), np.array(["a", None], dtype=object), np.array([], np.int64)):
        for copies in (1, 4):
            tiled = _tiled(values, copies)
            assert tiled.dtype == values.dtype
            assert tiled.tolist() == np.tile(values, copies).tolist()

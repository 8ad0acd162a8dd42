"""A small page's plain-Python grouping and text encoding (stacked.py) agree with the Arrow and
numpy ones used for larger pages: every row in a group of the same key, the same codes and
sorted labels for text."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from facta.views.batch import Column
from facta.views.grouping import group_rows
from facta.views.pipeline import BUCKET
from facta.views.stacked import _python_groups, _python_texts

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

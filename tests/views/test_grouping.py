"""Grouping without sorting: counting codes in a table gives what ``np.unique`` gives."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from facta.views.batch import unique_counts
from facta.views.grouping import _sorted_codes, unique_inverse


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.integers(0, 2_000_000), min_size=1, max_size=400),
    wide=st.booleans(),
)
def test_table_counts_match_np_unique(values: list[int], wide: bool) -> None:
    # ``wide``: a range far above the number of codes, where both functions sort instead.
    size = 2**40 if wide else max(values) + 1
    codes = np.asarray(values, dtype=np.int64)
    unique, inverse = np.unique(codes, return_inverse=True)
    found, found_inverse = unique_inverse(codes, size)
    assert found.tolist() == unique.tolist()
    assert found_inverse.tolist() == inverse.reshape(-1).tolist()
    unique, counts = np.unique(codes, return_counts=True)
    found, found_counts = unique_counts(codes, size)
    assert found.tolist() == unique.tolist()
    assert found_counts.tolist() == counts.tolist()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(-(2**40), 2**40), max_size=30), min_size=1, max_size=4))
def test_bucket_codes_match_np_unique(chunks: list[list[int]]) -> None:
    starts = np.asarray([v for chunk in chunks for v in chunk], dtype=np.int64)
    column = pa.chunked_array([pa.array(chunk, pa.int64()) for chunk in chunks], pa.int64())
    unique, inverse = np.unique(starts, return_inverse=True)
    found, found_inverse = _sorted_codes(column)
    assert found.tolist() == unique.tolist()
    assert found_inverse.tolist() == inverse.reshape(-1).tolist()

"""Grouping without sorting: counting codes in a table gives what ``np.unique`` gives; text
columns group alike whether they arrive encoded or not."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import given, settings
from hypothesis import strategies as st

from facta.views.batch import unique_counts
from facta.views.grouping import _sorted_codes, group_rows, unique_inverse


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


_texts = st.lists(st.one_of(st.none(), st.sampled_from(["UA", "B6", "é", ""])), max_size=40)


@settings(max_examples=60, deadline=None)
@given(carriers=_texts, data=st.data())
def test_dictionary_encoded_columns_group_as_plain_ones(
    carriers: list[str | None], data: st.DataObject
) -> None:
    # A page worker may hand rows over with text columns encoded already (nulls masked).
    origins = data.draw(
        st.lists(st.sampled_from(["JFK", None]), min_size=len(carriers), max_size=len(carriers))
    )
    plain = pa.table(
        {"carrier": pa.array(carriers, pa.string()), "origin": pa.array(origins, pa.string())}
    )
    encoded = pa.table(
        {name: pc.dictionary_encode(plain.column(name)) for name in plain.column_names}
    )
    assert pa.types.is_dictionary(encoded.schema.field("carrier").type)

    # The same groups, each with the same rows (how groups are numbered is the page's affair:
    # a null may come first in one numbering and last in the other).
    def rows_of(table: pa.Table) -> dict[tuple[str, int], list[int]]:
        groups, keys = group_rows(table, ["carrier", "origin"], None)
        found: dict[tuple[str, int], list[int]] = {}
        for row, group in enumerate(groups.inverse.tolist()):
            found.setdefault(keys[group], []).append(row)
        return found

    assert rows_of(encoded) == rows_of(plain)

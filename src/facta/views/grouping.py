"""Grouping a batch with numpy: each row gets the index of its (dimensions, bucket) group.

Dimension columns are dictionary-encoded by Arrow, their codes combined into one integer per
row and made dense with ``np.unique``. The result names each group by its key: the dimension
values as canonical JSON text, and the bucket start (epoch seconds; 0 for unbucketed views).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any, Final

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from facta.views.batch import Groups, Ints

_encode = msgspec.json.Encoder(order="deterministic")
Key = tuple[str, int]
# The bucket key of a group's all-time roll-up cell: no bucket starts this early.
ROLLUP: Final = -(2**62)


def dims_text(values: Sequence[Any]) -> str:
    """The stored spelling of a group's dimension values: a JSON array."""
    return _encode.encode(list(values)).decode()


def _codes(column: pa.ChunkedArray | pa.Array) -> tuple[Ints, list[Any]]:
    """Each row's index in a list of the column's values (null among them, if present)."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_dictionary(array.type):  # encoded already, nulls masked: null gets a code
        labels = array.dictionary.to_pylist()
        indices = array.indices
        if array.null_count:
            indices = indices.fill_null(len(labels))
            labels.append(None)
        return indices.to_numpy(zero_copy_only=False).astype(np.int64), labels
    encoded = pc.dictionary_encode(array, null_encoding="encode")
    indices = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    return indices, encoded.dictionary.to_pylist()


def unique_inverse(codes: Ints, size: int) -> tuple[Ints, Ints]:
    """``np.unique(codes, return_inverse=True)`` for codes in ``[0, size)``; without sorting
    when the range is small against their number."""
    if size > max(4 * codes.size, 1 << 16):
        unique, inverse = np.unique(codes, return_inverse=True)
        return unique, inverse.reshape(-1)
    seen = np.zeros(size, dtype=np.bool_)
    seen[codes] = True
    unique = np.flatnonzero(seen)
    dense = np.cumsum(seen, dtype=np.int64) - 1
    return unique.astype(np.int64), dense[codes]


def _sorted_codes(column: pa.ChunkedArray) -> tuple[Ints, Ints]:
    """A non-null integer column's distinct values, sorted, and each row's index among them
    (``np.unique`` with ``return_inverse``, hashing instead of sorting every row)."""
    encoded = pc.dictionary_encode(column.combine_chunks())
    values = encoded.dictionary.to_numpy(zero_copy_only=False).astype(np.int64)
    order = np.argsort(values, kind="stable")
    rank = np.empty(order.size, dtype=np.int64)
    rank[order] = np.arange(order.size, dtype=np.int64)
    indices = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    return values[order], rank[indices]


@dataclasses.dataclass(frozen=True, slots=True)
class GroupParts:
    """The two halves of a batch's group keys, per group: the index of its dimension values
    in ``dims`` (their stored spellings), and its bucket start."""

    dims_index: Ints
    dims: list[str]
    starts: Ints


def group_rows(
    rows: pa.Table, dimensions: Sequence[str], bucket: str | None
) -> tuple[Groups, list[Key]]:
    """Group ``rows`` by ``dimensions`` and the ``bucket`` column (if any)."""
    groups, keys, _ = group_rows_parts(rows, dimensions, bucket)
    return groups, keys


def group_rows_parts(
    rows: pa.Table, dimensions: Sequence[str], bucket: str | None
) -> tuple[Groups, list[Key], GroupParts]:
    """``group_rows``, and the halves of each group's key (see :class:`GroupParts`)."""
    count = rows.num_rows
    empty = np.zeros(0, dtype=np.int64)
    if count == 0:
        return Groups(empty, 0), [], GroupParts(empty, [], empty)
    code_columns: list[Ints] = []
    labels: list[list[Any]] = []
    for name in dimensions:
        codes, values = _codes(rows.column(name))
        code_columns.append(codes)
        labels.append(values)
    if bucket is not None:
        unique_starts, bucket_codes = _sorted_codes(rows.column(bucket))
        code_columns.append(bucket_codes.astype(np.int64))
        labels.append(unique_starts.tolist())
    if not code_columns:
        single = dims_text([])
        parts = GroupParts(np.zeros(1, dtype=np.int64), [single], np.zeros(1, dtype=np.int64))
        return Groups.single(count), [(single, 0)], parts
    sizes = [max(len(label), 1) for label in labels]
    if math.prod(sizes) < 2**62:
        combined = np.ravel_multi_index(tuple(code_columns), tuple(sizes))
        unique, inverse = unique_inverse(combined, math.prod(sizes))
        per_group = np.stack(np.unravel_index(unique, tuple(sizes)), axis=1)
    else:
        stacked = np.stack(code_columns, axis=1)
        per_group, inverse = np.unique(stacked, axis=0, return_inverse=True)
    per_group = per_group.astype(np.int64)
    ndims = len(dimensions)
    # Each distinct combination of dimension values is spelled once, not once per bucket.
    if ndims == 0:
        dims_index = np.zeros(per_group.shape[0], dtype=np.int64)
        dims_codes = np.zeros((1, 0), dtype=np.int64)
    else:
        dims_codes, dims_index = np.unique(per_group[:, :ndims], axis=0, return_inverse=True)
        dims_index = dims_index.reshape(-1).astype(np.int64)
    dims = [
        dims_text([labels[i][code] for i, code in enumerate(row)]) for row in dims_codes.tolist()
    ]
    if bucket is not None:
        starts = unique_starts[per_group[:, ndims]]
    else:
        starts = np.zeros(per_group.shape[0], dtype=np.int64)
    spelled = [dims[d] for d in dims_index.tolist()]
    keys: list[Key] = list(zip(spelled, starts.tolist(), strict=True))
    groups = Groups(inverse.reshape(-1).astype(np.int64), len(keys))
    return groups, keys, GroupParts(dims_index, dims, starts.astype(np.int64))


def rollup_groups(groups: Groups, keys: list[Key]) -> tuple[Groups, list[Key]]:
    """The all-time roll-up groups of bucketed groups: one per distinct dimension values."""
    parent, parent_keys = rollup_parents(keys)
    return parent_groups(groups, parent, len(parent_keys)), parent_keys


def rollup_parents(keys: list[Key]) -> tuple[Ints, list[Key]]:
    """Each bucketed group's all-time group (numbered in order of appearance), and their keys."""
    index: dict[str, int] = {}
    parent = np.fromiter(
        (index.setdefault(dims, len(index)) for dims, _ in keys), dtype=np.int64, count=len(keys)
    )
    return parent, [(dims, ROLLUP) for dims in index]


def parent_groups(groups: Groups, parent: Ints, count: int) -> Groups:
    """The rows of ``groups`` grouped by their group's ``parent``."""
    inverse = parent[groups.inverse] if groups.inverse.size else groups.inverse
    return Groups(inverse, count)


def alltime_parents(parts: GroupParts) -> tuple[Ints, list[Key]]:
    """``rollup_parents`` from the halves of the keys, without a Python step per group."""
    used, parent = unique_inverse(parts.dims_index, max(len(parts.dims), 1))
    return parent, [(parts.dims[d], ROLLUP) for d in used.tolist()]

"""A coarser level's per-batch aggregates, derived from a finer level's instead of the rows.

A rebuild's page is prepared for its bucket cells, then for the all-time cells and each
calendar roll-up level (weeks and months of a daily view). Every group of a coarser level is an
exact union of bucket groups, so what a measure needs of it — counts, moments, co-moments, the
(group, value) pairs of distinct and top-k, the values for the quantile sketches — follows
from the bucket groups' results, of which a page has a few thousand, instead of from its
50,000 rows again. ``parents[c]`` is the coarse group of fine group ``c`` throughout.

- Moments and co-moments merge with the pairwise formulas (Chan et al.) generalised to many
  parts: the parent's mean is the count-weighted mean of its children's, and its M2 (or
  co-moment) the children's plus each child's count times its mean's deviation from the
  parent's. Equal to the moments of the rows up to float rounding.
- Distinct (group, value) pairs of a parent are its children's pairs with their counts summed:
  the same pairs, counts and order as grouping the rows would give, so the sketches fed from
  them are the same.
- A parent's quantile values are its children's values one child after another (a gather, no
  sort): the same values as its rows, in another order; a KLL sketch's answer depends on
  the order only within its stated error.
"""

from __future__ import annotations

import numpy as np

from facta.views.batch import Floats, Ints, stable_order


def merge_moments(
    parents: Ints, count: int, moments: tuple[Ints, Floats, Floats]
) -> tuple[Ints, Floats, Floats]:
    """The parents' (n, mean, M2) from their children's."""
    n, mean, m2 = moments
    weights = n.astype(np.float64)
    total = np.bincount(parents, weights=weights, minlength=count)
    sums = np.bincount(parents, weights=weights * mean, minlength=count)
    merged_mean = sums / np.maximum(total, 1.0)
    deviation = mean - merged_mean[parents]
    merged_m2 = np.bincount(parents, weights=m2 + weights * deviation * deviation, minlength=count)
    return total.astype(np.int64), merged_mean, np.asarray(merged_m2, dtype=np.float64)


def merge_comoments(
    parents: Ints, count: int, found: tuple[Ints, Floats, Floats, Floats, Floats, Floats]
) -> tuple[Ints, Floats, Floats, Floats, Floats, Floats]:
    """The parents' (n, mean_x, mean_y, M2_x, M2_y, C) from their children's."""
    n, mean_x, mean_y, m2_x, m2_y, c = found
    weights = n.astype(np.float64)
    total = np.bincount(parents, weights=weights, minlength=count)
    safe = np.maximum(total, 1.0)
    merged_x = np.bincount(parents, weights=weights * mean_x, minlength=count) / safe
    merged_y = np.bincount(parents, weights=weights * mean_y, minlength=count) / safe
    dx = mean_x - merged_x[parents]
    dy = mean_y - merged_y[parents]
    merged_m2_x = np.bincount(parents, weights=m2_x + weights * dx * dx, minlength=count)
    merged_m2_y = np.bincount(parents, weights=m2_y + weights * dy * dy, minlength=count)
    merged_c = np.bincount(parents, weights=c + weights * dx * dy, minlength=count)
    parts = [np.asarray(part, dtype=np.float64) for part in (merged_m2_x, merged_m2_y, merged_c)]
    return total.astype(np.int64), merged_x, merged_y, parts[0], parts[1], parts[2]


def gather_slices(parents: Ints, count: int, ordered: Floats, starts: Ints) -> tuple[Floats, Ints]:
    """Values ordered by parent (each parent's children one after another, in child order)
    and where each parent starts, from values ordered by child and where each child starts."""
    lengths = np.diff(starts)
    children = stable_order(parents, count)
    taken = lengths[children]
    total = int(taken.sum())
    # Output position i of the child at rank r comes from starts[child] + (i - its offset).
    offsets = np.cumsum(taken) - taken
    source = np.repeat(starts[children] - offsets, taken) + np.arange(total, dtype=np.int64)
    merged_starts = np.zeros(count + 1, dtype=np.int64)
    np.cumsum(np.bincount(parents, weights=lengths, minlength=count), out=merged_starts[1:])
    return ordered[source], merged_starts


def merge_pairs(
    parents: Ints, count: int, groups: Ints, codes: Ints, counts: Ints, width: int
) -> tuple[Ints, Ints, Ints]:
    """The parents' distinct (group, value code) pairs, sorted, with their counts summed, from
    the children's (``width``: the number of value codes)."""
    if groups.size == 0:
        return groups, codes, counts
    pair = parents[groups] * np.int64(width) + codes
    size = count * width
    if size <= max(4 * pair.size, 1 << 16):
        table = np.bincount(pair, weights=counts.astype(np.float64), minlength=size)
        found = np.flatnonzero(table)
        summed = table[found].astype(np.int64)
    else:
        order = stable_order(pair, size)
        ordered = pair[order]
        starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
        found = ordered[starts]
        summed = np.add.reduceat(counts[order], starts).astype(np.int64)
    return (found // width).astype(np.int64), (found % width).astype(np.int64), summed

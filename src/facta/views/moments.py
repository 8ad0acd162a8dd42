"""Exact mergeable states: counts, sums, moments, co-moments, extremes, first and latest.

Every state merges associatively (``a.merge(b)`` is the state of a's inputs followed by b's),
so a view can be built in batches of any size, split into buckets and merged back for coarser
queries. Variance and covariance merge with Chan et al.'s pairwise update of (n, mean, M2),
which stays accurate where the textbook sum-of-squares formula cancels.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from facta.views.batch import Column, Floats, Groups, Ints, Segments

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


class SumOverflow(ArithmeticError):
    """An exact integer sum left the signed 64-bit range. ``group`` is the batch group index."""

    def __init__(self, group: int, total: int) -> None:
        super().__init__(f"integer sum {total} is outside the signed 64-bit range")
        self.group = group
        self.total = total


@dataclasses.dataclass(slots=True)
class SumState:
    """n present values and their sum: an exact ``int`` for integer fields, else a float pair.

    Float sums keep a Neumaier compensation term, so adding many values of mixed sign loses no
    more than one rounding overall.
    """

    n: int = 0
    total: int | float = 0
    compensation: float = 0.0

    def add(self, n: int, total: int | float) -> None:
        self.n += n
        if isinstance(total, int) and isinstance(self.total, int):
            self.total += total
            return
        current = float(self.total)
        new = current + float(total)
        if abs(current) >= abs(float(total)):
            self.compensation += (current - new) + float(total)
        else:
            self.compensation += (float(total) - new) + current
        self.total = new

    def merge(self, other: SumState) -> None:
        self.add(other.n, other.total)
        self.compensation += other.compensation

    def value(self) -> int | float | None:
        if self.n == 0:
            return None
        if isinstance(self.total, int):
            return self.total
        return self.total + self.compensation


def batch_sums(groups: Groups, column: Column) -> tuple[Ints, list[int | float]]:
    """Per-group count and sum of the present values; integer sums are exact Python ints."""
    present = column.present
    counts = groups.sizes(present)
    codes = groups.inverse[present]
    if column.is_int:
        values = column.values[present].astype(np.int64)
        # Split each value into 32-bit halves: their sums over a batch stay far below 2**53,
        # where float64 bincount is exact, and recombine into an exact Python int.
        low = (values & 0xFFFFFFFF).astype(np.float64)
        high = (values >> 32).astype(np.float64)
        low_sums = np.bincount(codes, weights=low, minlength=groups.count)
        high_sums = np.bincount(codes, weights=high, minlength=groups.count)
        return counts, [int(h) * 2**32 + int(lo) for h, lo in zip(high_sums, low_sums, strict=True)]
    segments = Segments.of(groups, present)
    values = column.values
    sums = [math.fsum(values[segments.slice(g)].tolist()) for g in range(groups.count)]
    return counts, [float(s) for s in sums]


def check_int64(group: int, total: int | float | None) -> None:
    if isinstance(total, int) and not INT64_MIN <= total <= INT64_MAX:
        raise SumOverflow(group, total)


@dataclasses.dataclass(slots=True)
class MomentState:
    """Count, mean and M2 (sum of squared deviations from the mean) of the present values."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def merge(self, other: MomentState) -> None:
        self.add(other.n, other.mean, other.m2)

    def add(self, n: int, mean: float, m2: float) -> None:
        """Merge the moments (n, mean, M2) of other values in (Chan et al.)."""
        if n == 0:
            return
        if self.n == 0:
            self.n, self.mean, self.m2 = n, mean, m2
            return
        total = self.n + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.n * n / total
        self.n = total

    def variance(self, *, sample: bool) -> float | None:
        needed = 2 if sample else 1
        if self.n < needed:
            return None
        return max(self.m2, 0.0) / (self.n - 1 if sample else self.n)


def batch_moments(groups: Groups, column: Column) -> tuple[Ints, Floats, Floats]:
    """Per-group n, mean and M2 in two vectorised passes (mean first, then deviations)."""
    present = column.present
    codes = groups.inverse[present]
    values = column.values[present].astype(np.float64)
    counts = np.bincount(codes, minlength=groups.count)
    sums = np.bincount(codes, weights=values, minlength=groups.count)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)
    deviations = values - means[codes]
    m2 = np.bincount(codes, weights=deviations * deviations, minlength=groups.count)
    return counts.astype(np.int64), means.astype(np.float64), m2.astype(np.float64)


@dataclasses.dataclass(slots=True)
class CoMomentState:
    """Rows where both fields are present: n, both means, both M2 and the co-moment C."""

    n: int = 0
    mean_x: float = 0.0
    mean_y: float = 0.0
    m2_x: float = 0.0
    m2_y: float = 0.0
    c: float = 0.0

    def merge(self, other: CoMomentState) -> None:
        self.add(other.n, other.mean_x, other.mean_y, other.m2_x, other.m2_y, other.c)

    def add(self, n: int, mean_x: float, mean_y: float, m2_x: float, m2_y: float, c: float) -> None:
        """Merge the co-moments of other rows in (Chan et al.)."""
        if n == 0:
            return
        if self.n == 0:
            self.n, self.mean_x, self.mean_y = n, mean_x, mean_y
            self.m2_x, self.m2_y, self.c = m2_x, m2_y, c
            return
        total = self.n + n
        dx = mean_x - self.mean_x
        dy = mean_y - self.mean_y
        weight = self.n * n / total
        self.m2_x += m2_x + dx * dx * weight
        self.m2_y += m2_y + dy * dy * weight
        self.c += c + dx * dy * weight
        self.mean_x += dx * n / total
        self.mean_y += dy * n / total
        self.n = total

    def covariance(self, *, sample: bool) -> float | None:
        needed = 2 if sample else 1
        if self.n < needed:
            return None
        return self.c / (self.n - 1 if sample else self.n)

    def correlation(self) -> float | None:
        if self.n < 2 or self.m2_x <= 0.0 or self.m2_y <= 0.0:
            return None
        r = self.c / math.sqrt(self.m2_x * self.m2_y)
        return min(1.0, max(-1.0, r))


def batch_comoments(
    groups: Groups, x: Column, y: Column
) -> tuple[Ints, Floats, Floats, Floats, Floats, Floats]:
    """Per-group n, both means, both M2 and the co-moment, over rows where both are present."""
    both = x.present & y.present
    codes = groups.inverse[both]
    xs = x.values[both].astype(np.float64)
    ys = y.values[both].astype(np.float64)
    counts = np.bincount(codes, minlength=groups.count)
    safe = np.maximum(counts, 1)
    mean_x = np.bincount(codes, weights=xs, minlength=groups.count) / safe
    mean_y = np.bincount(codes, weights=ys, minlength=groups.count) / safe
    dx = xs - mean_x[codes]
    dy = ys - mean_y[codes]
    m2_x = np.bincount(codes, weights=dx * dx, minlength=groups.count)
    m2_y = np.bincount(codes, weights=dy * dy, minlength=groups.count)
    c = np.bincount(codes, weights=dx * dy, minlength=groups.count)
    moments = [np.asarray(part, dtype=np.float64) for part in (m2_x, m2_y, c)]
    return counts.astype(np.int64), mean_x, mean_y, moments[0], moments[1], moments[2]


@dataclasses.dataclass(slots=True)
class ExtremeState:
    """The smallest (or largest) present value and how many values were seen."""

    n: int = 0
    value: Any = None

    def merge(self, other: ExtremeState, *, largest: bool) -> None:
        if other.n == 0:
            return
        if self.n == 0 or (other.value > self.value if largest else other.value < self.value):
            self.value = other.value
        self.n += other.n


def batch_extremes(groups: Groups, column: Column, *, largest: bool) -> list[ExtremeState]:
    segments = Segments.of(groups, column.present)
    counts = np.diff(segments.starts)
    ordered = column.values[segments.rows]
    states = [ExtremeState() for _ in range(groups.count)]
    nonempty = np.flatnonzero(counts > 0)
    if nonempty.size == 0:
        return states
    reduce = np.maximum if largest else np.minimum
    if column.is_numeric:
        found = reduce.reduceat(ordered, segments.starts[nonempty])
        for index, g in enumerate(nonempty):
            states[g] = ExtremeState(int(counts[g]), _plain(found[index]))
        return states
    for g in nonempty:
        chunk = ordered[segments.starts[g] : segments.starts[g + 1]].tolist()
        states[g] = ExtremeState(int(counts[g]), max(chunk) if largest else min(chunk))
    return states


@dataclasses.dataclass(slots=True)
class PositionedState:
    """The value at the highest (latest) or lowest (first) log position seen, and that position."""

    n: int = 0
    position: int = 0
    value: Any = None

    def merge(self, other: PositionedState, *, latest: bool) -> None:
        if other.n == 0:
            return
        if self.n == 0 or (
            other.position > self.position if latest else other.position < self.position
        ):
            self.position, self.value = other.position, other.value
        self.n += other.n


def batch_positioned(
    groups: Groups, column: Column, positions: Ints, *, latest: bool
) -> list[PositionedState]:
    rows = np.flatnonzero(column.present)
    states = [PositionedState() for _ in range(groups.count)]
    if rows.size == 0:
        return states
    codes = groups.inverse[rows]
    order = np.lexsort((positions[rows], codes))
    sorted_codes = codes[order]
    # The last row of each group run holds its highest position, the first row its lowest.
    boundary = np.flatnonzero(np.diff(sorted_codes)) + 1
    starts = np.concatenate(([0], boundary))
    ends = np.concatenate((boundary, [sorted_codes.size]))
    for start, end in zip(starts, ends, strict=True):
        row = rows[order[end - 1 if latest else start]]
        g = int(groups.inverse[row])
        states[g] = PositionedState(
            int(end - start), int(positions[row]), _plain(column.values[row])
        )
    return states


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value JSON and msgpack understand."""
    if isinstance(value, np.generic):
        return value.item()
    return value

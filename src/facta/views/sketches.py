"""Approximate mergeable states over Apache DataSketches: quantiles, frequent items, distinct.

Each state wraps one sketch, created lazily (most groups of a fine-grained view never need the
larger sketches), serialised with the library's own binary format, and merged with the
library's merge or union. The error each one promises is reported beside its estimate.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import datasketches as ds
import numpy as np

from facta.views.batch import Floats


@dataclasses.dataclass(slots=True)
class QuantileState:
    """A KLL sketch of doubles with parameter ``k``; its rank error shrinks as k grows."""

    k: int
    sketch: Any = None

    def _ensure(self) -> Any:
        if self.sketch is None:
            self.sketch = ds.kll_doubles_sketch(self.k)
        return self.sketch

    def update(self, values: Floats) -> None:
        if values.size:
            self._ensure().update(np.ascontiguousarray(values, dtype=np.float64))

    def sketch_for_update(self) -> Any:
        """The sketch to feed non-empty contiguous float64 arrays directly."""
        return self.sketch if self.sketch is not None else self._ensure()

    def merge(self, other: QuantileState) -> None:
        if other.sketch is not None and not other.sketch.is_empty():
            self._ensure().merge(other.sketch)

    @property
    def n(self) -> int:
        return 0 if self.sketch is None else int(self.sketch.n)

    def quantile(self, q: float) -> float | None:
        if self.n == 0:
            return None
        return float(self.sketch.get_quantile(q))

    def rank(self, value: float, *, inclusive: bool) -> float | None:
        if self.n == 0:
            return None
        return float(self.sketch.get_rank(value, inclusive))

    def min(self) -> float | None:
        return None if self.n == 0 else float(self.sketch.get_min_value())

    def max(self) -> float | None:
        return None if self.n == 0 else float(self.sketch.get_max_value())

    def rank_error(self) -> float:
        """The normalised rank error of this sketch (single-rank, about 99 % confidence)."""
        if self.sketch is None:
            return float(ds.kll_doubles_sketch.get_normalized_rank_error(self.k, False))
        return float(self.sketch.normalized_rank_error(False))

    def dump(self) -> bytes:
        return b"" if self.sketch is None else bytes(self.sketch.serialize())

    @staticmethod
    def load(k: int, raw: bytes) -> QuantileState:
        sketch = ds.kll_doubles_sketch.deserialize(raw) if raw else None
        return QuantileState(k, sketch)


@dataclasses.dataclass(frozen=True, slots=True)
class FrequentItem:
    """An item the frequent-items sketch kept, with its estimate and guaranteed bounds."""

    item: str
    estimate: int
    lower: int
    upper: int


@dataclasses.dataclass(slots=True)
class TopKState:
    """A frequent-items sketch of strings with a map of ``2**lg_max_map`` entries."""

    lg_max_map: int
    sketch: Any = None

    def _ensure(self) -> Any:
        if self.sketch is None:
            self.sketch = ds.frequent_strings_sketch(self.lg_max_map)
        return self.sketch

    def update(self, item: str, weight: int) -> None:
        self._ensure().update(item, int(weight))

    def sketch_for_update(self) -> Any:
        """The sketch to feed many items directly (``update(item, weight)`` on it)."""
        return self._ensure()

    def merge(self, other: TopKState) -> None:
        if other.sketch is not None and not other.sketch.is_empty():
            self._ensure().merge(other.sketch)

    @property
    def n(self) -> int:
        return 0 if self.sketch is None else int(self.sketch.total_weight)

    def top(self, k: int) -> list[FrequentItem]:
        """The ``k`` items with the largest estimates (no false negatives above the error)."""
        if self.sketch is None or self.sketch.is_empty():
            return []
        rows = self.sketch.get_frequent_items(ds.frequent_items_error_type.NO_FALSE_NEGATIVES)
        items = [FrequentItem(str(r[0]), int(r[1]), int(r[2]), int(r[3])) for r in rows]
        items.sort(key=lambda i: (-i.estimate, i.item))
        return items[:k]

    def bounds(self, item: str) -> tuple[int, int]:
        if self.sketch is None:
            return 0, 0
        return int(self.sketch.get_lower_bound(item)), int(self.sketch.get_upper_bound(item))

    def dump(self) -> bytes:
        return b"" if self.sketch is None else bytes(self.sketch.serialize())

    @staticmethod
    def load(lg_max_map: int, raw: bytes) -> TopKState:
        sketch = ds.frequent_strings_sketch.deserialize(raw) if raw else None
        return TopKState(lg_max_map, sketch)


@dataclasses.dataclass(slots=True)
class DistinctState:
    """A HyperLogLog sketch with ``2**lg_k`` registers (relative error about 1.04/sqrt(2**lg_k)).

    Merging many states (a query over hundreds of buckets) goes through one HLL union kept
    open, not a new union per merge.
    """

    lg_k: int
    sketch: Any = None
    union: Any = None

    def _settled(self) -> Any:
        """The current sketch (closing an open union into one)."""
        if self.union is not None:
            self.sketch = self.union.get_result(ds.tgt_hll_type.HLL_8)
            self.union = None
        return self.sketch

    def update(self, item: str) -> None:
        self.sketch_for_update().update(item)

    def sketch_for_update(self) -> Any:
        """The sketch to feed many items directly (``update(item)`` on it)."""
        if self._settled() is None:
            self.sketch = ds.hll_sketch(self.lg_k, ds.tgt_hll_type.HLL_8)
        return self.sketch

    def merge(self, other: DistinctState) -> None:
        theirs = other._settled()
        if theirs is None or theirs.is_empty():
            return
        if self.union is None:
            self.union = ds.hll_union(self.lg_k)
            if self.sketch is not None:
                self.union.update(self.sketch)
                self.sketch = None
        self.union.update(theirs)

    def estimate(self) -> float:
        sketch = self._settled()
        return 0.0 if sketch is None else float(sketch.get_estimate())

    def bounds(self, sigmas: int = 3) -> tuple[float, float]:
        sketch = self._settled()
        if sketch is None:
            return 0.0, 0.0
        return float(sketch.get_lower_bound(sigmas)), float(sketch.get_upper_bound(sigmas))

    def relative_error(self) -> float:
        return 1.04 / math.sqrt(2**self.lg_k)

    def dump(self) -> bytes:
        sketch = self._settled()
        return b"" if sketch is None else bytes(sketch.serialize_compact())

    @staticmethod
    def load(lg_k: int, raw: bytes) -> DistinctState:
        sketch = ds.hll_sketch.deserialize(raw) if raw else None
        return DistinctState(lg_k, sketch)

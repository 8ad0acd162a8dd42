"""Approximate mergeable states over Apache DataSketches: quantiles, frequent items, distinct.

Each state keeps its inputs as they are while they are few (most cells of a fine-grained view
see a few dozen), and past a limit wraps one sketch, serialised with the library's own binary
format and merged with the library's merge or union. The sketch holds so few inputs exactly
too, so either way gives the same answers. The error each one promises is reported beside its
estimate.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from collections.abc import Iterable, Sequence
from typing import Any, Final

import datasketches as ds
import msgspec
import numpy as np

from facta.views.batch import Floats

# The msgpack extension code of a quantile state still holding its values (``QuantileState``).
EXACT_VALUES_EXT: Final = 1
_F8: Final = np.dtype("<f8")


def _floats(chunk: bytes) -> Floats:
    """Little-endian float64 bytes as a writable array (the sketch refuses read-only ones)."""
    return np.frombuffer(chunk, _F8).copy()


@dataclasses.dataclass(slots=True)
class QuantileState:
    """A KLL sketch of doubles with parameter ``k``; its rank error shrinks as k grows.

    While it has seen at most ``k`` values the state keeps the values themselves (``exact``:
    little-endian float64 bytes) instead of a sketch. A KLL sketch of at most k values holds
    exactly those values and answers from them, so every answer is the same; but most cells of
    a fine-grained view (a carrier, an airport and a day) see a few dozen values, and creating
    a sketch for each cost more than everything else their rebuild does with them. The sketch
    is built when the (k+1)-th value arrives, when a sketch is merged in, and, for a moment,
    when a query asks (``view()``).
    """

    k: int
    sketch: Any = None
    exact: bytes = b""

    def _promoted(self) -> Any:
        """The sketch, built from the values kept so far if there is none yet."""
        if self.sketch is None:
            self.sketch = self._built()
            self.exact = b""
        return self.sketch

    def _built(self) -> Any:
        sketch = ds.kll_doubles_sketch(self.k)
        if self.exact:
            sketch.update(_floats(self.exact))
        return sketch

    def update(self, values: Floats) -> None:
        if values.size:
            self.add(np.ascontiguousarray(values, dtype=_F8).tobytes())

    def add(self, chunk: bytes) -> None:
        """Fold values given as little-endian float64 bytes (at least one value)."""
        if self.sketch is not None:
            self.sketch.update(_floats(chunk))
        elif len(self.exact) + len(chunk) <= 8 * self.k:
            self.exact += chunk
        else:
            self._promoted().update(_floats(chunk))

    def merge(self, other: QuantileState) -> None:
        if other.sketch is not None:
            if not other.sketch.is_empty():
                self._promoted().merge(other.sketch)
        elif other.exact:
            self.add(other.exact)

    def view(self) -> Any:
        """A sketch to answer from: this state's, or one built from its values (not kept)."""
        return self.sketch if self.sketch is not None else self._built()

    @property
    def n(self) -> int:
        return len(self.exact) // 8 if self.sketch is None else int(self.sketch.n)

    def quantile(self, q: float) -> float | None:
        if self.n == 0:
            return None
        return float(self.view().get_quantile(q))

    def quantiles(self, qs: Sequence[float]) -> list[float | None]:
        """``quantile(q)`` for each of ``qs``, from one sketch."""
        if self.n == 0:
            return [None] * len(qs)
        sketch = self.view()
        return [float(sketch.get_quantile(q)) for q in qs]

    def rank(self, value: float, *, inclusive: bool) -> float | None:
        if self.n == 0:
            return None
        return float(self.view().get_rank(value, inclusive))

    def min(self) -> float | None:
        if self.sketch is None:
            return float(np.frombuffer(self.exact, _F8).min()) if self.exact else None
        return None if self.sketch.is_empty() else float(self.sketch.get_min_value())

    def max(self) -> float | None:
        if self.sketch is None:
            return float(np.frombuffer(self.exact, _F8).max()) if self.exact else None
        return None if self.sketch.is_empty() else float(self.sketch.get_max_value())

    def rank_error(self) -> float:
        """The normalised rank error of this sketch (single-rank, about 99 % confidence)."""
        if self.sketch is None:  # exact values: a sketch of them reports the bound of k
            return float(ds.kll_doubles_sketch.get_normalized_rank_error(self.k, False))
        return float(self.sketch.normalized_rank_error(False))

    def dump(self) -> Any:
        """For the store: the sketch's own binary format, or the kept values as a msgpack
        extension (``EXACT_VALUES_EXT``)."""
        return self.dump_all((self,))[0]

    @staticmethod
    def dump_all(states: Sequence[QuantileState]) -> list[Any]:
        """Each state's ``dump``, in one pass over a commit's states (no call per state)."""
        ext = msgspec.msgpack.Ext
        return [
            (ext(EXACT_VALUES_EXT, s.exact) if s.exact else b"")
            if s.sketch is None
            else bytes(s.sketch.serialize())
            for s in states
        ]

    def sketch_bytes(self) -> bytes:
        """The state in the KLL binary format, whichever way it is kept (empty: ``b""``)."""
        if self.n == 0:
            return b""
        return bytes(self.view().serialize())

    @staticmethod
    def load(k: int, raw: Any) -> QuantileState:
        if isinstance(raw, msgspec.msgpack.Ext):
            data = bytes(raw.data)
            if raw.code != EXACT_VALUES_EXT or len(data) % 8 or len(data) > 8 * k:
                raise ValueError(
                    f"quantile state: expected extension {EXACT_VALUES_EXT} with at most {k} "
                    f"float64 values, found extension {raw.code} of {len(data)} bytes"
                )
            return QuantileState(k, None, data)
        raw = bytes(raw)
        return QuantileState(k, ds.kll_doubles_sketch.deserialize(raw) if raw else None)


@dataclasses.dataclass(frozen=True, slots=True)
class FrequentItem:
    """An item the frequent-items sketch kept, with its estimate and guaranteed bounds."""

    item: str
    estimate: int
    lower: int
    upper: int


# Items a frequent-items state counts exactly before it builds a sketch of them.
EXACT_ITEMS: Final = 64


@dataclasses.dataclass(slots=True)
class TopKState:
    """A frequent-items sketch of strings with a map of ``2**lg_max_map`` entries.

    While it has seen at most ``EXACT_ITEMS`` distinct items and no sketch was merged in, the
    state keeps each item's total weight itself (``exact``): the sketch counts them exactly too
    (its map holds hundreds before it purges), so every answer is the same, without a sketch
    per cell of a fine-grained view.
    """

    lg_max_map: int
    sketch: Any = None
    exact: dict[str, int] | None = None

    def _promoted(self) -> Any:
        """The sketch, built from the counted items (in item order) if there is none yet."""
        if self.sketch is None:
            self.sketch = ds.frequent_strings_sketch(self.lg_max_map)
            for item, weight in sorted((self.exact or {}).items()):
                self.sketch.update(item, weight)
            self.exact = None
        return self.sketch

    def add(self, items: Sequence[str], weights: Sequence[int]) -> None:
        """Fold each item with its weight."""
        if self.sketch is not None or len(items) > EXACT_ITEMS:
            collections.deque(map(self._promoted().update, items, weights), maxlen=0)
            return
        if self.exact is None:
            fresh = dict(zip(items, weights, strict=True))
            if len(fresh) == len(items):  # distinct items (a batch's pairs): nothing to sum
                self.exact = fresh
                return
            self.exact = {}
        exact = self.exact
        for item, weight in zip(items, weights, strict=True):
            exact[item] = exact.get(item, 0) + weight
        if len(exact) > EXACT_ITEMS:
            self._promoted()

    def merge(self, other: TopKState) -> None:
        if other.sketch is not None:
            if not other.sketch.is_empty():
                self._promoted().merge(other.sketch)
        elif other.exact:
            self.add(list(other.exact), list(other.exact.values()))

    @property
    def n(self) -> int:
        if self.sketch is None:
            return sum(self.exact.values()) if self.exact else 0
        return int(self.sketch.total_weight)

    def top(self, k: int) -> list[FrequentItem]:
        """The ``k`` items with the largest estimates (no false negatives above the error)."""
        if self.sketch is None:
            counted = self.exact or {}
            items = [FrequentItem(i, w, w, w) for i, w in counted.items()]
        elif self.sketch.is_empty():
            return []
        else:
            rows = self.sketch.get_frequent_items(ds.frequent_items_error_type.NO_FALSE_NEGATIVES)
            items = [FrequentItem(str(r[0]), int(r[1]), int(r[2]), int(r[3])) for r in rows]
        items.sort(key=lambda i: (-i.estimate, i.item))
        return items[:k]

    def bounds(self, item: str) -> tuple[int, int]:
        if self.sketch is None:
            weight = (self.exact or {}).get(item, 0)
            return weight, weight
        return int(self.sketch.get_lower_bound(item)), int(self.sketch.get_upper_bound(item))

    def dump(self) -> Any:
        """For the store: the sketch's own binary format, or the counted items as a map (the
        store's encoder writes a map in item order, so the same counts give the same bytes)."""
        return self.dump_all((self,))[0]

    @staticmethod
    def dump_all(states: Sequence[TopKState]) -> list[Any]:
        """Each state's ``dump``, in one pass over a commit's states (no call per state)."""
        return [
            (s.exact or b"") if s.sketch is None else bytes(s.sketch.serialize()) for s in states
        ]

    def sketch_bytes(self) -> bytes:
        """The state in the frequent-items binary format, whichever way it is kept (a copy is
        promoted: this state stays as it is)."""
        if self.sketch is not None:
            return bytes(self.sketch.serialize())
        if not self.exact:
            return b""
        return bytes(TopKState(self.lg_max_map, exact=dict(self.exact))._promoted().serialize())

    @staticmethod
    def load(lg_max_map: int, raw: Any) -> TopKState:
        if isinstance(raw, dict):
            valid = all(isinstance(i, str) and type(w) is int and w > 0 for i, w in raw.items())
            if len(raw) > EXACT_ITEMS or not valid:
                raise ValueError(
                    f"top-k state: expected at most {EXACT_ITEMS} items with positive integer "
                    f"weights, found {len(raw)} items"
                )
            return TopKState(lg_max_map, None, dict(raw))
        raw = bytes(raw)
        sketch = ds.frequent_strings_sketch.deserialize(raw) if raw else None
        return TopKState(lg_max_map, sketch)


# Distinct items a state keeps as they are before it builds a HyperLogLog sketch of them.
EXACT_DISTINCT: Final = 64


@dataclasses.dataclass(slots=True)
class DistinctState:
    """A HyperLogLog sketch with ``2**lg_k`` registers (relative error about 1.04/sqrt(2**lg_k)).

    While it has seen at most ``EXACT_DISTINCT`` distinct items and nothing was merged in as a
    sketch, the state keeps the items themselves (``exact``) and counts them exactly: the
    sketch would hold them as exact coupons too, but creating one per cell of a fine-grained
    view and feeding it item by item cost about a fifth of a rebuild's folding. Past that the
    items go into a sketch, and items merged into a state that has a sketch wait in ``exact``
    until the next answer (one sketch update each, or one union of them when there are many).

    Merging many states (a query over hundreds of buckets) goes through one HLL union kept
    open, not a new union per merge.
    """

    lg_k: int
    sketch: Any = None
    union: Any = None
    exact: set[str] | None = None

    def _sketched(self) -> bool:
        return self.sketch is not None or self.union is not None

    def _settled(self) -> Any:
        """The current sketch (closing an open union into one, and adding waiting items), or
        None while the state has none."""
        if self.union is not None:
            if self.exact:
                self.union.update(self._sketch_of(self.exact))
                self.exact = None
            self.sketch = self.union.get_result(ds.tgt_hll_type.HLL_8)
            self.union = None
        elif self.sketch is not None and self.exact:
            collections.deque(map(self.sketch.update, self.exact), maxlen=0)
            self.exact = None
        return self.sketch

    def _sketch_of(self, items: Iterable[str]) -> Any:
        sketch = ds.hll_sketch(self.lg_k, ds.tgt_hll_type.HLL_8)
        collections.deque(map(sketch.update, sorted(items)), maxlen=0)
        return sketch

    def add(self, items: Sequence[str]) -> None:
        """Fold these items (distinct or not)."""
        if self._sketched():
            collections.deque(map(self._settled().update, items), maxlen=0)
        elif self.exact is None and len(items) > EXACT_DISTINCT:
            self.sketch = ds.hll_sketch(self.lg_k, ds.tgt_hll_type.HLL_8)
            collections.deque(map(self.sketch.update, items), maxlen=0)
        else:
            self._keep(items)

    def _keep(self, items: Iterable[str]) -> None:
        """Add items to the kept ones; past ``EXACT_DISTINCT`` they go into the sketch."""
        if self.exact is None:
            self.exact = set(items)
        else:
            self.exact.update(items)
        if len(self.exact) <= EXACT_DISTINCT:
            return
        if self._sketched():
            self._settled()
        else:
            self.sketch = self._sketch_of(self.exact)
            self.exact = None

    def merge(self, other: DistinctState) -> None:
        if not other._sketched():
            if other.exact:
                self._keep(other.exact)
            return
        theirs = other._settled()
        if theirs.is_empty():
            return
        if self.union is None:
            self.union = ds.hll_union(self.lg_k)
            if self.sketch is not None:
                self.union.update(self.sketch)
                self.sketch = None
        self.union.update(theirs)

    def estimate(self) -> float:
        sketch = self._settled()
        if sketch is None:
            return float(len(self.exact or ()))
        return float(sketch.get_estimate())

    def bounds(self, sigmas: int = 3) -> tuple[float, float]:
        sketch = self._settled()
        if sketch is None:  # counted exactly
            count = float(len(self.exact or ()))
            return count, count
        return float(sketch.get_lower_bound(sigmas)), float(sketch.get_upper_bound(sigmas))

    def relative_error(self) -> float:
        return 1.04 / math.sqrt(2**self.lg_k)

    def dump(self) -> Any:
        """For the store: the sketch's compact binary format, or the kept items as a set (the
        store's encoder writes a set as a sorted array, so the same items give the same
        bytes)."""
        return self.dump_all((self,))[0]

    @staticmethod
    def dump_all(states: Sequence[DistinctState]) -> list[Any]:
        """Each state's ``dump``, in one pass over a commit's states (no call per state that
        keeps its items; a sketched one is settled first)."""
        return [
            (s.exact or b"")
            if s.sketch is None and s.union is None
            else bytes(s._settled().serialize_compact())
            for s in states
        ]

    def sketch_bytes(self) -> bytes:
        """The state in the HLL binary format, whichever way it is kept (empty: ``b""``)."""
        sketch = self._settled()
        if sketch is None:
            return bytes(self._sketch_of(self.exact).serialize_compact()) if self.exact else b""
        return bytes(sketch.serialize_compact())

    @staticmethod
    def load(lg_k: int, raw: Any) -> DistinctState:
        if isinstance(raw, list):
            if len(raw) > EXACT_DISTINCT or not all(isinstance(i, str) for i in raw):
                raise ValueError(
                    f"distinct state: expected at most {EXACT_DISTINCT} strings, found "
                    f"{len(raw)} items"
                )
            return DistinctState(lg_k, exact=set(raw))
        raw = bytes(raw)
        return DistinctState(lg_k, ds.hll_sketch.deserialize(raw) if raw else None)

"""Keeping Python's cyclic garbage collector off the paths of long-running facta processes.

View maintainers, query caches and entity runtimes hold tens of thousands of long-lived
objects (cell states, entity states) and make hundreds of thousands of short-lived ones per
second; a full collection walks all of them at once, a pause of tens of milliseconds. Two tools
here: pausing the collector around one batch, commit or query, and settling (freezing the
survivors out of its reach) at quiet moments.

Folding a batch or answering a query allocates hundreds of thousands of short-lived, acyclic
objects (rows, pairs, keys, small states), and every few hundred allocations the collector
walks the young objects — now and then all of them. That was about a sixth of a rebuild's CPU
time, and the occasional full walk is what made a query's p99 ten times its median. Reference
counting still frees everything promptly; the collector is switched back on (if it was on) when
the block ends.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import time
from collections.abc import Iterator

_unfreeze_at_exit = False


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Run the block with the cyclic collector off, then restore it as it was."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def settle_long_lived() -> None:
    """Move every object alive now out of the collector's reach (``gc.freeze``).

    Called after a reader decodes many cells: they live as long as the cache, hold no
    reference cycles (reference counting frees them when replaced), and a full collection would
    otherwise walk all of them — hundreds of thousands of objects, a few hundred milliseconds —
    whenever enough new objects (query results, memoized rows) have survived. The price: a
    reference cycle that is garbage at this moment is not collected until ``gc.unfreeze()`` —
    done at exit, so the interpreter's last collection still finds everything.
    """
    global _unfreeze_at_exit
    if not _unfreeze_at_exit:
        atexit.register(gc.unfreeze)
        _unfreeze_at_exit = True
    gc.freeze()


# A maintainer that only ever settles would never collect a cycle that became garbage after it
# was settled: this often it unfreezes and walks everything once (one pause of tens of ms).
FULL_COLLECTION_SECONDS = 600.0


class LiveSettler:
    """Keeps the collector's full walks off a live maintainer's (or a runtime's) path.

    A live view folds a few dozen events every few milliseconds with the collector on outside
    the fold and the commit. Its cells keep growing, so every so often the collector's oldest
    generation fills and a full walk over every cell state runs in the middle of a step — tens of
    milliseconds, the worst delays a live view had. After each live commit, :meth:`settle`
    collects the young generations (a live step leaves no cyclic garbage, so this finds little
    and costs little) and freezes what survived, so later walks only see new objects; every
    ``full_every`` seconds it unfreezes and runs one full collection instead.
    """

    def __init__(self, full_every: float = FULL_COLLECTION_SECONDS) -> None:
        self.full_every = full_every
        self.full_collections = 0
        self._last_full = time.monotonic()

    def settle(self) -> None:
        now = time.monotonic()
        if now - self._last_full >= self.full_every:
            gc.unfreeze()
            gc.collect()
            self.full_collections += 1
            self._last_full = now
        else:
            gc.collect(1)
        settle_long_lived()

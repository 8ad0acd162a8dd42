"""Per-process counters of a log: latencies, batch sizes, queue depth, lag, conflicts."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Any

# Log-linear buckets: 16 per power of two, from 1 unit up. Relative error under 4.5 %.
_SUB = 16


class Histogram:
    """A bucketed histogram of positive values; cheap to record, mergeable, bounded memory."""

    __slots__ = ("_buckets", "count", "max", "total")

    def __init__(self) -> None:
        self._buckets: dict[int, int] = {}
        self.count = 0
        self.total = 0.0
        self.max = 0.0

    def record(self, value: float) -> None:
        index = 0 if value < 1.0 else int(math.log2(value) * _SUB) + 1
        self._buckets[index] = self._buckets.get(index, 0) + 1
        self.count += 1
        self.total += value
        if value > self.max:
            self.max = value

    def quantile(self, q: float) -> float | None:
        if self.count == 0:
            return None
        rank = q * self.count
        seen = 0
        for index in sorted(self._buckets):
            seen += self._buckets[index]
            if seen >= rank:
                upper = 1.0 if index == 0 else 2.0 ** (index / _SUB)
                return min(upper, self.max)
        return self.max

    def summary(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "mean": (self.total / self.count) if self.count else None,
            "p50": self.quantile(0.5),
            "p99": self.quantile(0.99),
            "max": self.max if self.count else None,
        }


@dataclass
class LogMetrics:
    """What one process observed of its log. Read it through ``Log.stats()``."""

    append_latency_us: Histogram = field(default_factory=Histogram)
    batch_appends: Histogram = field(default_factory=Histogram)
    appends: int = 0
    events: int = 0
    conflicts: int = 0
    replays: int = 0
    batches: int = 0
    commit_failures: int = 0
    queue_depth: int = 0
    queue_depth_max: int = 0
    checkpoints: int = 0
    wal_restarts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    subscription_lag: dict[int, tuple[int, float]] = field(default_factory=dict)

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            lags = list(self.subscription_lag.values())
            return {
                "appends": self.appends,
                "events": self.events,
                "conflicts": self.conflicts,
                "replays": self.replays,
                "batches": self.batches,
                "commit_failures": self.commit_failures,
                "queue_depth": self.queue_depth,
                "queue_depth_max": self.queue_depth_max,
                "wal_checkpoints": self.checkpoints,
                "wal_restarts": self.wal_restarts,
                "append_latency_us": self.append_latency_us.summary(),
                "batch_appends": self.batch_appends.summary(),
                "subscriptions": len(lags),
                "subscription_lag_positions": max((lag[0] for lag in lags), default=0),
                "subscription_lag_seconds": max((lag[1] for lag in lags), default=0.0),
            }

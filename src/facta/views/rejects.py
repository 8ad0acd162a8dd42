"""What a view refused, counted: rejected events and values, unmatched enrichment keys.

No event ever stalls a view. An event without a usable bucket time, a value of the wrong type,
an enrichment key with no reference row — each is counted, the first positions are kept so a
person can look them up in the log, and the view moves on. The counts are committed with the
checkpoint.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np

KEPT_POSITIONS: Final = 100


class Rejects:
    """Counts of rejected events and values, with the first positions of each."""

    def __init__(self, saved: dict[str, Any] | None = None) -> None:
        saved = saved or {}
        self.events: dict[str, Any] = saved.get("events", {"count": 0, "positions": []})
        self.values: dict[str, dict[str, Any]] = saved.get("values", {})
        self.unmatched: dict[str, int] = saved.get("unmatched", {})

    @staticmethod
    def _add(entry: dict[str, Any], positions: np.ndarray[Any, Any]) -> None:
        entry["count"] += int(positions.size)
        room = KEPT_POSITIONS - len(entry["positions"])
        if room > 0:
            entry["positions"].extend(int(p) for p in positions[:room])

    def add(self, events: np.ndarray[Any, Any], values: dict[str, np.ndarray[Any, Any]]) -> None:
        if events.size:
            self._add(self.events, events)
        for field, positions in values.items():
            self._add(self.values.setdefault(field, {"count": 0, "positions": []}), positions)

    def add_unmatched(self, counts: dict[str, int]) -> None:
        for table, count in counts.items():
            self.unmatched[table] = self.unmatched.get(table, 0) + count

    def as_json(self) -> dict[str, Any]:
        return {"events": self.events, "values": self.values, "unmatched": self.unmatched}

"""Pre-generated rows shared by facta and its baselines: the same bytes on both sides.

Data is a JSON object of about 190 bytes, metadata about 60 bytes with the two reserved causality
fields. Generating them before the clock starts keeps the caller's work out of every figure.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from facta.log import NewEvent
from facta.log.codec import encode_json
from facta.log.ids import uuid7

EVENT_TYPE = "OrderPlaced"

_PRODUCTS = ("kettle", "lamp", "chair", "desk", "mug", "rug", "shelf", "clock")


@dataclass(frozen=True, slots=True)
class Row:
    """One event as the caller builds it and as a raw INSERT stores it."""

    event: NewEvent
    id: str
    data_json: str
    metadata_json: str


def make_data(rng: random.Random, index: int) -> dict[str, Any]:
    return {
        "order": f"order-{index:09d}",
        "customer": f"customer-{rng.randrange(1_000_000):07d}",
        "product": rng.choice(_PRODUCTS),
        "quantity": rng.randrange(1, 20),
        "amount": round(rng.uniform(1, 5000), 2),
        "currency": "EUR",
        "channel": "web",
        "warehouse": f"wh-{rng.randrange(100):03d}",
        "placed_at": f"2026-01-{1 + index % 28:02d}T{index % 24:02d}:{index % 60:02d}:00Z",
    }


def make_metadata(index: int) -> dict[str, Any]:
    return {"causation_id": f"cmd-{index:08d}", "correlation_id": f"req-{index // 4:08d}"}


def make_rows(count: int, seed: int = 7) -> list[Row]:
    """``count`` rows with a fixed seed, so every run of the bench stores the same bytes."""
    rng = random.Random(seed)
    rows = []
    for index in range(count):
        data = make_data(rng, index)
        metadata = make_metadata(index)
        event = NewEvent(type=EVENT_TYPE, data=data, metadata=metadata)
        rows.append(
            Row(event, str(uuid7()), encode_json(data).decode(), encode_json(metadata).decode())
        )
    return rows


def row_sizes(rows: list[Row]) -> dict[str, float]:
    """Mean encoded sizes, reported with each line so the reader knows what was written."""
    if not rows:
        return {"data_bytes": 0.0, "metadata_bytes": 0.0}
    return {
        "data_bytes": round(sum(len(r.data_json) for r in rows) / len(rows), 1),
        "metadata_bytes": round(sum(len(r.metadata_json) for r in rows) / len(rows), 1),
    }

"""What the dashboard page needs to know about the built views, read from the views file.

For each view: its dimensions, bucket and measures (to offer them when adding a panel and to
check panels), the position it has applied, and its latest event time — the end of the latest
bucket holding events — which relative ranges such as ``"7d"`` count back from.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import apsw

from facta.dashboards.definition import ViewCatalog
from facta.views import calendar
from facta.views.grouping import ROLLUP
from facta.views.query import compiled_generation
from facta.views.store import views_path

_CURRENT = """
SELECT g.view, g.generation, g.definition, g.definition_hash, g.checkpoint, g.created_at
FROM view_current AS c JOIN view_generations AS g USING (view, generation)
ORDER BY g.view
"""
_LATEST = (
    "SELECT max(bucket) FROM view_cells"
    " WHERE view = ? AND generation = ? AND level = '' AND bucket > ?"
)


@dataclasses.dataclass(frozen=True, slots=True)
class BuiltView:
    """One built view as the page sees it."""

    catalog: ViewCatalog
    description: str
    position: int
    definition_hash: str
    latest: int | None
    """End of the latest bucket holding events (epoch seconds); ``None`` if empty or unbucketed."""

    def to_json(self) -> dict[str, Any]:
        latest = None
        if self.latest is not None:
            zone = ZoneInfo(self.catalog.timezone)
            latest = datetime.fromtimestamp(self.latest, UTC).astimezone(zone).isoformat()
        return {
            **self.catalog.to_json(),
            "description": self.description,
            "position": self.position,
            "definition_hash": self.definition_hash,
            "latest": latest,
            "latest_epoch": self.latest,
        }


def built_views(log_path: str | os.PathLike[str]) -> dict[str, BuiltView]:
    """Every built view of the log, by name (empty if no view was ever built)."""
    path = views_path(log_path)
    if not os.path.exists(path):
        return {}
    conn: Any = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READONLY)
    conn.set_busy_timeout(5_000)
    try:
        with conn:  # one read transaction: definitions and latest buckets agree
            try:
                rows = list(conn.execute(_CURRENT))
            except apsw.SQLError:
                return {}  # the views file exists but holds no views yet
            found = {}
            for name, generation, definition, digest, checkpoint, created_at in rows:
                # the same key as the query path's, so both share one compiled view
                view = compiled_generation(
                    (name, digest, created_at), functools.partial(json.loads, definition)
                )
                catalog = ViewCatalog.of(view)
                latest = None
                bucket = view.definition.bucket
                if bucket is not None:
                    (start,) = conn.execute(_LATEST, (name, generation, ROLLUP)).fetchone()
                    if start is not None:
                        latest = calendar.step(int(start), bucket.width, bucket.timezone)
                found[name] = BuiltView(
                    catalog,
                    json.loads(definition).get("description", ""),
                    int(checkpoint),
                    digest,
                    latest,
                )
            return found
    finally:
        conn.close()

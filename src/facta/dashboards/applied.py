"""Which dashboards were applied, and what ``facta plan`` says about the declared ones.

Applied dashboards are recorded in the views file beside the log (``<log>.views.db``, table
``dashboard_applied``): like views, they are a cache of the project that ``apply`` brings up to
date. The server serves the applied definitions; saving a dashboard from the page writes the
project file and records it applied in one step, so ``facta plan`` has nothing left to do.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

import apsw

from facta.dashboards.definition import Dashboard
from facta.views.plan import Step
from facta.views.store import views_path

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS dashboard_applied(
    name TEXT PRIMARY KEY,
    definition_hash TEXT NOT NULL,
    definition TEXT NOT NULL,
    applied_at TEXT NOT NULL
) WITHOUT ROWID;
"""


def definition_hash(dashboard: Dashboard) -> str:
    text = json.dumps(dashboard.document(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class AppliedDashboards:
    """The ``dashboard_applied`` table of one log's views file."""

    def __init__(self, log_path: str | os.PathLike[str]) -> None:
        flags = apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE
        self._conn: Any = apsw.Connection(views_path(log_path), flags=flags)
        self._conn.set_busy_timeout(10_000)
        with self._conn:
            self._conn.execute(SCHEMA)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> AppliedDashboards:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def all(self) -> dict[str, Dashboard]:
        rows = self._conn.execute("SELECT name, definition FROM dashboard_applied ORDER BY name")
        return {
            name: Dashboard.model_validate({**json.loads(text), "name": name})
            for name, text in rows
        }

    def hashes(self) -> dict[str, str]:
        rows = self._conn.execute("SELECT name, definition_hash FROM dashboard_applied")
        return {name: digest for name, digest in rows}

    def record(self, dashboard: Dashboard) -> None:
        with self._conn:
            self._conn.execute(
                "INSERT OR REPLACE INTO dashboard_applied VALUES (?, ?, ?, ?)",
                (
                    dashboard.name,
                    definition_hash(dashboard),
                    json.dumps(dashboard.document(), sort_keys=True),
                    datetime.now(UTC).isoformat(timespec="seconds"),
                ),
            )

    def forget(self, name: str) -> None:
        with self._conn:
            self._conn.execute("DELETE FROM dashboard_applied WHERE name = ?", (name,))


def plan_dashboards(applied: AppliedDashboards, declared: Sequence[Dashboard]) -> list[Step]:
    """What applying ``declared`` would change: create, change, drop or keep each dashboard."""
    current = applied.hashes()
    steps = []
    for dashboard in declared:
        label = f"dashboard {dashboard.name}"
        digest = current.pop(dashboard.name, None)
        if digest is None:
            steps.append(Step(label, "create", "not applied yet"))
        elif digest != definition_hash(dashboard):
            steps.append(Step(label, "change", "panels or title changed"))
        else:
            steps.append(Step(label, "keep", "up to date"))
    steps += [Step(f"dashboard {name}", "drop", "no longer declared") for name in sorted(current)]
    return steps


def apply_dashboards(applied: AppliedDashboards, declared: Sequence[Dashboard]) -> list[Step]:
    """Carry out :func:`plan_dashboards`; return the steps that changed something."""
    by_name = {d.name: d for d in declared}
    done = []
    for step in plan_dashboards(applied, declared):
        name = step.view.removeprefix("dashboard ")
        if step.action == "drop":
            applied.forget(name)
        elif step.action != "keep":
            applied.record(by_name[name])
        if step.action != "keep":
            done.append(step)
    return done

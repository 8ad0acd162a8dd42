"""Writing a dashboard back into ``facta.toml``: comments kept, atomic, refused if stale.

The page loads the project file's version (a SHA-256 of its bytes) with the dashboards and
sends it back when it saves. If the file changed in between, the save is refused
(:class:`StaleProject`, HTTP 409) instead of overwriting someone's edit. The new text is
written to a temporary file in the same folder, flushed to disk, then renamed over the old
one, so a reader sees the old file or the new one, never half of either. tomlkit edits the
parsed document in place: comments, ordering and formatting of everything else survive, and
a panel that did not change keeps its own comments too.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.items import AoT, Table

from facta.dashboards.definition import Dashboard


class StaleProject(RuntimeError):
    """The project file changed since the caller loaded it."""

    def __init__(self, path: Path, expected: str, found: str) -> None:
        super().__init__(
            f"{path} changed since it was loaded (expected version {expected[:12]}, found "
            f"{found[:12]}): reload the dashboard and save again"
        )
        self.expected = expected
        self.found = found


def file_version(path: Path) -> str:
    """The version the page must send back to save: SHA-256 of the file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_dashboard(path: Path, dashboard: Dashboard, expected_version: str) -> str:
    """Write ``dashboard`` as ``[dashboards.NAME]`` into the project file; return the new
    version. Raises :class:`StaleProject` if the file is not at ``expected_version``."""
    text = path.read_bytes()
    found = hashlib.sha256(text).hexdigest()
    if found != expected_version:
        raise StaleProject(path, expected_version, found)
    document = tomlkit.parse(text.decode("utf-8"))
    merge_dashboard(document, dashboard)
    new_text = tomlkit.dumps(document).encode("utf-8")
    write_atomically(path, new_text)
    return hashlib.sha256(new_text).hexdigest()


def merge_dashboard(document: tomlkit.TOMLDocument, dashboard: Dashboard) -> None:
    """Update ``document`` to hold ``dashboard``, touching only what differs."""
    wanted = dashboard.document()
    dashboards = document.get("dashboards")
    if dashboards is None:
        dashboards = tomlkit.table(is_super_table=True)
        document["dashboards"] = dashboards
    table = dashboards.get(dashboard.name)
    if table is None:
        table = tomlkit.table()
        dashboards[dashboard.name] = table
    for key in [k for k in table if k != "panels" and k not in wanted]:
        del table[key]
    for key, value in wanted.items():
        if key != "panels" and table.get(key) != value:
            table[key] = value
    existing = table.get("panels")
    current = [_plain(p) for p in existing] if isinstance(existing, AoT | list) else []
    wanted_panels = wanted["panels"]
    if isinstance(existing, AoT) and current == wanted_panels[: len(current)]:
        for panel in wanted_panels[len(current) :]:
            existing.append(_panel_table(panel))  # panels added at the end: append only
        return
    old = {str(p.get("id")): p for p in existing} if isinstance(existing, AoT | list) else {}
    panels = tomlkit.aot()
    for panel in wanted_panels:
        kept = old.get(panel["id"])
        # An unchanged panel keeps its comments and layout.
        panels.append(
            kept if isinstance(kept, Table) and _plain(kept) == panel else _panel_table(panel)
        )
    if "panels" in table:
        del table["panels"]
    if len(panels):
        table["panels"] = panels


def _panel_table(panel: dict[str, Any]) -> Table:
    fresh = tomlkit.table()
    for key, value in panel.items():
        fresh[key] = _inline(value)
    return fresh


def _inline(value: Any) -> Any:
    if isinstance(value, dict):
        inline = tomlkit.inline_table()
        inline.update(value)
        return inline
    return value


def _plain(item: Any) -> Any:
    return item.unwrap() if hasattr(item, "unwrap") else item


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``: temp file in the same folder, fsync, rename."""
    folder = path.resolve().parent
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        if path.exists():
            os.chmod(temp, path.stat().st_mode & 0o777)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    if hasattr(os, "O_DIRECTORY"):
        directory = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

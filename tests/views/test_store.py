"""The views file: history snapshots kept copy-on-write, and files of an older layout."""

from __future__ import annotations

import time
from pathlib import Path

import apsw
import pytest

from facta.views import walcheckpoints
from facta.views.store import SCHEMA_VERSION, StoredCell, ViewStore


def commit(store: ViewStore, checkpoint: int, cells: list[StoredCell]) -> None:
    store.commit(
        "v", 1, cells, checkpoint=checkpoint, batches=checkpoint, rejected={}, history_every=100
    )


def test_a_snapshot_keeps_each_cell_as_it_was_when_later_commits_overwrite_it(
    tmp_path: Path,
) -> None:
    store = ViewStore(tmp_path / "v.views.db")
    store.create_generation("v", "hash", {})
    commit(store, 60, [StoredCell("a", 0, 50, b"a1"), StoredCell("b", 0, 60, b"b1")])
    commit(store, 120, [StoredCell("a", 0, 110, b"a2"), StoredCell("w", 7, 110, b"w1", "1w")])
    commit(store, 150, [StoredCell("a", 0, 140, b"a3"), StoredCell("c", 0, 150, b"c1")])
    commit(store, 230, [StoredCell("a", 0, 230, b"a4"), StoredCell("w", 7, 230, b"w2", "1w")])
    # Snapshots at the first commit past each multiple of 100; none at 60 or 150.
    assert [s.checkpoint for s in store.snapshots("v", 1)] == [120, 230]

    def state(at: int) -> dict[tuple[str, str, int], bytes]:
        return {(c.level, c.dims, c.bucket): c.state for c in store.state_at("v", 1, at)}

    assert state(120) == {("", "a", 0): b"a2", ("", "b", 0): b"b1", ("1w", "w", 7): b"w1"}
    assert state(230) == {
        ("", "a", 0): b"a4",
        ("", "b", 0): b"b1",
        ("", "c", 0): b"c1",
        ("1w", "w", 7): b"w2",
    }
    # Only versions some snapshot needs were kept: a3 (written and overwritten between
    # snapshots) was not, a2 and w1 (part of the snapshot at 120) were.
    kept = store._conn.execute("SELECT dims, state FROM view_history ORDER BY changed_at")
    assert [(d, bytes(s)) for d, s in kept] == [("a", b"a2"), ("w", b"w1")]


def test_a_file_of_an_older_layout_is_dropped_and_rebuilt(tmp_path: Path) -> None:
    path = tmp_path / "old.views.db"
    conn = apsw.Connection(str(path))
    conn.execute("CREATE TABLE view_cells(view TEXT, generation INTEGER, dims TEXT)")
    conn.execute("INSERT INTO view_cells VALUES ('v', 1, '[]')")
    conn.close()
    store = ViewStore(path)
    assert store.current("v") is None
    assert list(store.cells("v", 1, level=None)) == []
    version = store._conn.execute("PRAGMA user_version").fetchone()[0]
    assert version == SCHEMA_VERSION
    store.create_generation("v", "hash", {})
    commit(store, 5, [StoredCell("a", 0, 5, b"x")])
    store.close()
    again = ViewStore(path)  # the current layout is kept as it is
    assert [c.state for c in again.cells("v", 1)] == [b"x"]


def test_wal_checkpoints_run_beside_the_commits_and_keep_the_wal_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The default starts a checkpoint at 32 MB; 4 MB here keeps the test short (same mechanism).
    assert walcheckpoints.THRESHOLD_BYTES < walcheckpoints.LIMIT_BYTES
    monkeypatch.setattr(walcheckpoints, "THRESHOLD_BYTES", 4 * 1024 * 1024)
    path = tmp_path / "v.views.db"
    store = ViewStore(path)
    store.create_generation("v", "hash", {})
    checkpoints = store._checkpoints
    assert checkpoints is not None
    state = bytes(range(256)) * 16  # 4 KiB a cell
    written = 0
    n = 0
    # A live maintainer's pace: a commit of five cells every millisecond or so, until the WAL
    # has received several times the 4 MB at which a background checkpoint starts.
    while written < 5 * checkpoints.threshold_pages * 16384:
        n += 1
        cells = [StoredCell(f"g{(n * 5 + i) % 200}", 0, n, state) for i in range(5)]
        commit(store, n, cells)
        written += 5 * len(state)
        time.sleep(0.001)
    deadline = time.monotonic() + 30
    while checkpoints.done == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert checkpoints.done >= 1, "no checkpoint ran in the background"
    assert checkpoints.inline == 0, "a commit had to checkpoint itself"
    wal = Path(str(path) + "-wal").stat().st_size
    assert wal < 64 * 1024 * 1024, f"the WAL grew to {wal} bytes"
    assert len(list(store.cells("v", 1))) == 200
    store.close()
    reopened = ViewStore(path)
    assert reopened.current("v") is None  # never activated, but its cells are all there
    assert len(list(reopened.cells("v", 1))) == 200
    reopened.close()


def test_history_is_kept_when_another_store_took_a_snapshot_meanwhile(tmp_path: Path) -> None:
    """A store skips looking for old rows of the cells it wrote since the snapshot; once a
    snapshot it did not take exists (another process maintained the view meanwhile), it looks
    again for every cell."""
    path = tmp_path / "v.views.db"
    first = ViewStore(path)
    first.create_generation("v", "hash", {})
    commit(first, 50, [StoredCell("x", 0, 50, b"x1")])
    commit(first, 120, [StoredCell("x", 0, 120, b"x2")])  # the snapshot at 120
    commit(first, 130, [StoredCell("x", 0, 130, b"x3")])  # keeps x2
    commit(first, 140, [StoredCell("x", 0, 140, b"x4")])  # x3 is past the snapshot: not kept
    second = ViewStore(path)
    commit(second, 210, [StoredCell("y", 0, 205, b"y1")])  # the snapshot at 210
    commit(first, 220, [StoredCell("x", 0, 220, b"x5")])  # must keep x4 for the one at 210
    assert [s.checkpoint for s in first.snapshots("v", 1)] == [120, 210]

    def state(at: int) -> dict[str, bytes]:
        return {c.dims: c.state for c in first.state_at("v", 1, at)}

    assert state(120) == {"x": b"x2"}
    assert state(210) == {"x": b"x4", "y": b"y1"}
    kept = first._conn.execute("SELECT dims, state FROM view_history ORDER BY changed_at")
    assert [(d, bytes(s)) for d, s in kept] == [("x", b"x2"), ("x", b"x4")]
    second.close()
    first.close()

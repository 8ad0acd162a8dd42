"""Where views keep their state: a SQLite file beside the log, ``<log>.views.db``.

Why a separate file: SQLite has one writer per file. If view state lived in the log's file,
every view commit would take the log's write lock and stall appends behind it. In its own file,
a view commits its cells, its reject counts and its checkpoint in one transaction of its own,
which is all crash safety needs — and the file is a pure cache: delete it and every view is
rebuilt from the log.

Tables: ``view_generations`` (one row per build of a view: definition, hash, checkpoint, rejects),
``view_current`` (which generation readers use — a rebuild swaps this row, never a file),
``view_cells`` (one row per level, group and bucket: serialised measure states and the position
at which the cell last changed; level ``''`` holds the view's own buckets and all-time cells,
``'1d'``/``'1w'``/``'1mo'`` its calendar roll-ups), ``view_locks`` (the one maintainer of each
view), ``view_handover`` (a request that the maintainer let go of a view, so ``facta apply`` can
rebuild or drop it while ``facta serve`` maintains it), ``view_snapshots`` and ``view_history``
(history snapshots for ``as_of(position=P)``).

History is copy-on-write: a snapshot at checkpoint S is one row in ``view_snapshots``; when a
later commit overwrites a cell whose ``changed_at`` ≤ S, the commit first copies the old row into
``view_history``. The state at S is then, per cell, the version with the largest
``changed_at`` ≤ S among the live row and its copies — nothing is copied at snapshot time.
A cell this store has written since S already has ``changed_at`` > S (it was written because it
took an event past the checkpoint before, which is ≥ S, and ``changed_at`` never goes down), so
the commit only looks for old rows of the other cells: a live commit rewrites the same few
dozen cells again and again and copies nothing, without a trigger checking every row.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, Final

import apsw

from facta.log.sqlite_schema import switch_to_wal
from facta.views.locks import ViewLocks
from facta.views.walcheckpoints import BackgroundCheckpoints

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS view_generations(
    view TEXT NOT NULL,
    generation INTEGER NOT NULL,
    definition_hash TEXT NOT NULL,
    definition TEXT NOT NULL,
    checkpoint INTEGER NOT NULL DEFAULT 0,
    batches INTEGER NOT NULL DEFAULT 0,
    rejected TEXT NOT NULL DEFAULT '{}',
    snapshot_at INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    PRIMARY KEY (view, generation)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS view_current(
    view TEXT PRIMARY KEY,
    generation INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS view_cells(
    view TEXT NOT NULL,
    generation INTEGER NOT NULL,
    level TEXT NOT NULL,
    dims TEXT NOT NULL,
    bucket INTEGER NOT NULL,
    changed_at INTEGER NOT NULL,
    state BLOB NOT NULL,
    UNIQUE (view, generation, level, dims, bucket)
);
CREATE TABLE IF NOT EXISTS view_snapshots(
    view TEXT NOT NULL,
    generation INTEGER NOT NULL,
    checkpoint INTEGER NOT NULL,
    batches INTEGER NOT NULL,
    rejected TEXT NOT NULL,
    PRIMARY KEY (view, generation, checkpoint)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS view_history(
    view TEXT NOT NULL,
    generation INTEGER NOT NULL,
    level TEXT NOT NULL,
    dims TEXT NOT NULL,
    bucket INTEGER NOT NULL,
    changed_at INTEGER NOT NULL,
    state BLOB NOT NULL,
    PRIMARY KEY (view, generation, level, dims, bucket, changed_at)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS view_applied(
    id INTEGER PRIMARY KEY,
    view TEXT NOT NULL,
    action TEXT NOT NULL,
    definition_hash TEXT,
    applied_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS view_cells_changed ON view_cells(view, generation, changed_at);
CREATE TABLE IF NOT EXISTS view_handover(
    view TEXT PRIMARY KEY,
    requester TEXT NOT NULL,
    requested_at TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS view_locks(
    view TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    acquired_at TEXT NOT NULL
) WITHOUT ROWID;
"""
# The layout of the file: an older file is a cache of an older layout, dropped and rebuilt.
SCHEMA_VERSION: Final = 3
TABLES: Final = (
    "view_generations",
    "view_current",
    "view_cells",
    "view_applied",
    "view_locks",
    "view_handover",
    "view_snapshots",
    "view_history",
)
BASE_LEVEL: Final = ""


@dataclasses.dataclass(frozen=True, slots=True)
class Generation:
    """One build of a view, as committed."""

    view: str
    generation: int
    definition_hash: str
    definition: dict[str, Any]
    checkpoint: int
    batches: int
    rejected: dict[str, Any]
    created_at: str


@dataclasses.dataclass(frozen=True, slots=True)
class StoredCell:
    dims: str
    bucket: int
    changed_at: int
    state: bytes
    level: str = BASE_LEVEL


@dataclasses.dataclass(frozen=True, slots=True)
class HistorySnapshot:
    """A checkpoint whose exact state the store can give back (see :meth:`ViewStore.state_at`)."""

    checkpoint: int
    batches: int
    rejected: dict[str, Any]


def views_path(log_path: str | os.PathLike[str]) -> str:
    """The views file that belongs to the log at ``log_path``."""
    return os.fspath(log_path) + ".views.db"


class ViewStore(ViewLocks):
    """The views file: generations, cells, locks. One connection; not shared across threads."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        # Decoded cells of readers, per view (see ViewSnapshot); refreshed by changed_at.
        self.cache: dict[str, Any] = {}
        # Test hook: called inside the commit transaction, after cells and checkpoint are written.
        self.before_commit: Callable[[], None] | None = None
        # Per view: the cells this store wrote since the snapshot of a generation, and which —
        # (generation, its created_at, snapshot_at) — so another build or snapshot starts anew.
        self._fresh: dict[str, tuple[tuple[int, str, int], set[tuple[str, str, int]]]] = {}
        flags = apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE
        self._conn: Any = apsw.Connection(self.path, flags=flags)
        self._conn.set_busy_timeout(10_000)
        # Cells of a few KB (sketches) fit 16 KB pages without overflow chains; the page size
        # only takes effect when the file is created.
        self._conn.execute("PRAGMA page_size=16384")
        switch_to_wal(self._conn, 10.0)
        self._conn.execute("PRAGMA synchronous=NORMAL")
        # A commit upserts thousands of cells: keep the B-tree pages it walks in memory (up to
        # 64 MB, allocated as used), and the statement journals the upsert and the history
        # copies need in memory rather than in a temporary file.
        self._conn.execute("PRAGMA cache_size=-65536")
        self._conn.execute("PRAGMA temp_store=MEMORY")
        in_memory = self.path == ":memory:" or self.path.startswith("file::memory:")
        self._checkpoints = None if in_memory else BackgroundCheckpoints(self.path, self._conn)
        # IMMEDIATE: two processes opening a new file must not both read version 0, then race.
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            (version,) = self._conn.execute("PRAGMA user_version").fetchone() or (0,)
            if int(version) != SCHEMA_VERSION:
                # A file of another layout is a cache of the log like any other: start afresh.
                self._conn.execute("DROP TRIGGER IF EXISTS view_cells_history")
                for table in TABLES:
                    self._conn.execute(f"DROP TABLE IF EXISTS {table}")
                self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self._conn.execute(SCHEMA)
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def close(self) -> None:
        if self._checkpoints is not None:
            self._checkpoints.close()
        self._conn.close()

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """One write transaction that takes the write lock first (BEGIN IMMEDIATE, waiting up to
        the busy timeout), so a read inside it can never be overtaken by another writer's commit
        — a deferred transaction that reads, then writes after such a commit fails at once with
        "database is locked" (SQLITE_BUSY_SNAPSHOT), without waiting."""
        if self._conn.in_transaction:
            yield
            return
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if self._conn.in_transaction:  # SQLite may have rolled back already (e.g. disk full)
                self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """One read transaction: everything read inside sees the same commit (inside another
        one, that one)."""
        if self._conn.in_transaction:
            yield
            return
        self._conn.execute("BEGIN")
        try:
            yield
        finally:
            self._conn.execute("COMMIT")

    # -- generations ----------------------------------------------------------------------------

    def current(self, view: str) -> Generation | None:
        row = self._conn.execute(
            "SELECT g.view, g.generation, g.definition_hash, g.definition, g.checkpoint, "
            "g.batches, g.rejected, g.created_at FROM view_current c JOIN view_generations g "
            "ON g.view = c.view AND g.generation = c.generation WHERE c.view = ?",
            (view,),
        ).fetchone()
        return None if row is None else _generation(row)

    def generation(self, view: str, generation: int) -> Generation | None:
        row = self._conn.execute(
            "SELECT view, generation, definition_hash, definition, checkpoint, batches, "
            "rejected, created_at FROM view_generations WHERE view = ? AND generation = ?",
            (view, generation),
        ).fetchone()
        return None if row is None else _generation(row)

    def views(self) -> list[Generation]:
        rows = self._conn.execute(
            "SELECT g.view, g.generation, g.definition_hash, g.definition, g.checkpoint, "
            "g.batches, g.rejected, g.created_at FROM view_current c JOIN view_generations g "
            "ON g.view = c.view AND g.generation = c.generation ORDER BY c.view"
        ).fetchall()
        return [_generation(row) for row in rows]

    def create_generation(self, view: str, definition_hash: str, definition: dict[str, Any]) -> int:
        """A new, empty generation of ``view`` (not yet the one readers use)."""
        with self._writing():
            row = self._conn.execute(
                "SELECT coalesce(max(generation), 0) FROM view_generations WHERE view = ?", (view,)
            ).fetchone()
            generation = int(row[0]) + 1
            self._conn.execute(
                "INSERT INTO view_generations(view, generation, definition_hash, definition, "
                "created_at) VALUES (?, ?, ?, ?, ?)",
                (view, generation, definition_hash, json.dumps(definition), _now()),
            )
        return generation

    def activate(self, view: str, generation: int) -> None:
        """Make ``generation`` the one readers use, and drop the others' state, atomically."""
        with self._writing():
            self._conn.execute(
                "INSERT INTO view_current(view, generation) VALUES (?, ?) "
                "ON CONFLICT(view) DO UPDATE SET generation = excluded.generation",
                (view, generation),
            )
            for table in ("view_cells", "view_snapshots", "view_history"):
                self._conn.execute(
                    f"DELETE FROM {table} WHERE view = ? AND generation <> ?", (view, generation)
                )
            self._conn.execute(
                "DELETE FROM view_generations WHERE view = ? AND generation <> ?",
                (view, generation),
            )

    def drop(self, view: str) -> None:
        """Remove a view and all its state (refused while another process maintains it)."""
        self.lock(view)
        with self._writing():
            for table in (
                "view_cells",
                "view_history",
                "view_snapshots",
                "view_generations",
                "view_current",
                "view_locks",
            ):
                self._conn.execute(f"DELETE FROM {table} WHERE view = ?", (view,))

    def set_definition(self, view: str, definition: str) -> None:
        """Replace the stored definition of the current generation (same hash: description)."""
        with self._writing():
            self._conn.execute(
                "UPDATE view_generations SET definition = ? WHERE view = ? AND generation = "
                "(SELECT generation FROM view_current WHERE view = ?)",
                (definition, view, view),
            )

    def record_applied(self, view: str, action: str, compiled: Any) -> None:
        digest = None if compiled is None else compiled.definition_hash
        with self._writing():
            self._conn.execute(
                "INSERT INTO view_applied(view, action, definition_hash, applied_at) "
                "VALUES (?, ?, ?, ?)",
                (view, action, digest, _now()),
            )

    def applied(self) -> list[tuple[str, str, str | None, str]]:
        """What ``apply`` did, oldest first: (view, action, definition hash, time)."""
        rows = self._conn.execute(
            "SELECT view, action, definition_hash, applied_at FROM view_applied ORDER BY id"
        ).fetchall()
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    # -- cells ----------------------------------------------------------------------------------

    def cells(
        self,
        view: str,
        generation: int,
        *,
        buckets: tuple[int | None, int | None] = (None, None),
        changed_after: int | None = None,
        level: str | None = BASE_LEVEL,
    ) -> Iterator[StoredCell]:
        """Stored cells of one level (default: the view's own cells; ``None``: every level)."""
        low, high = buckets
        sql = (
            "SELECT dims, bucket, changed_at, state, level FROM view_cells "
            "WHERE view = ? AND generation = ?"
        )
        params: list[Any] = [view, generation]
        if level is not None:
            sql += " AND level = ?"
            params.append(level)
        if low is not None:
            sql += " AND bucket >= ?"
            params.append(low)
        if high is not None:
            sql += " AND bucket < ?"
            params.append(high)
        if changed_after is not None and changed_after >= 0:
            sql += " AND changed_at > ?"
            params.append(changed_after)
        sql += " ORDER BY level, dims, bucket"  # key order, whichever index SQLite walks
        for row in self._conn.execute(sql, params):
            yield StoredCell(row[0], int(row[1]), int(row[2]), bytes(row[3]), row[4])

    def commit(
        self,
        view: str,
        generation: int,
        cells: Iterable[StoredCell],
        *,
        checkpoint: int,
        batches: int,
        rejected: dict[str, Any],
        history_every: int | None = None,
    ) -> None:
        """Write changed cells, reject counts and the checkpoint in one transaction.

        With ``history_every``, a commit whose checkpoint reaches a multiple of it that no
        earlier snapshot reached also records a history snapshot at ``checkpoint``.
        """
        cells = list(cells)
        owned = not self._conn.in_transaction
        with self._writing():
            row = self._conn.execute(
                "SELECT snapshot_at, created_at FROM view_generations "
                "WHERE view = ? AND generation = ?",
                (view, generation),
            ).fetchone()
            build = (generation, "" if row is None else row[1], 0 if row is None else int(row[0]))
            known, fresh = self._fresh.get(view, (build, set()))
            if known != build:
                fresh = set()
            if build[2] > 0:
                self._keep_history(view, generation, cells, build[2], fresh)
            self._conn.executemany(
                "INSERT INTO view_cells(view, generation, level, dims, bucket, changed_at, state) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(view, generation, level, dims, bucket) "
                "DO UPDATE SET changed_at = excluded.changed_at, state = excluded.state",
                [
                    (view, generation, c.level, c.dims, c.bucket, c.changed_at, c.state)
                    for c in cells
                ],
            )
            updated = self._conn.execute(
                "UPDATE view_generations SET checkpoint = ?, batches = ?, rejected = ? "
                "WHERE view = ? AND generation = ? AND checkpoint <= ?",
                (checkpoint, batches, json.dumps(rejected), view, generation, checkpoint),
            )
            if self._conn.changes() != 1:
                raise RuntimeError(
                    f"view {view!r} generation {generation}: checkpoint {checkpoint} was not "
                    "recorded (generation missing or already past it)"
                )
            del updated
            snapshot_at = build[2]
            if history_every is not None and checkpoint // history_every > (
                snapshot_at // history_every
            ):
                self._snapshot(view, generation, checkpoint, batches, rejected)
                snapshot_at = checkpoint
            if self.before_commit is not None:
                self.before_commit()
        if owned:  # committed: these cells now have changed_at > the snapshot (or none is)
            if snapshot_at != build[2]:
                fresh = set()  # written at the snapshot itself: not past it
            elif snapshot_at > 0:  # (before any snapshot no history is kept: nothing to skip)
                fresh.update((c.level, c.dims, c.bucket) for c in cells)
            self._fresh[view] = ((build[0], build[1], snapshot_at), fresh)

    def _keep_history(
        self,
        view: str,
        generation: int,
        cells: list[StoredCell],
        snapshot_at: int,
        fresh: set[tuple[str, str, int]],
    ) -> None:
        """Copy into ``view_history`` the stored rows of ``cells`` last changed at or before the
        snapshot, before they are overwritten (``fresh`` cells are known to be past it)."""
        older = [
            (view, generation, c.level, c.dims, c.bucket, snapshot_at)
            for c in cells
            if (c.level, c.dims, c.bucket) not in fresh
        ]
        if older:
            self._conn.executemany(
                "INSERT OR IGNORE INTO view_history(view, generation, level, dims, bucket, "
                "changed_at, state) SELECT view, generation, level, dims, bucket, changed_at, "
                "state FROM view_cells WHERE view = ? AND generation = ? AND level = ? "
                "AND dims = ? AND bucket = ? AND changed_at <= ?",
                older,
            )

    def _snapshot(
        self,
        view: str,
        generation: int,
        checkpoint: int,
        batches: int,
        rejected: dict[str, Any],
    ) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO view_snapshots(view, generation, checkpoint, batches, "
            "rejected) VALUES (?, ?, ?, ?, ?)",
            (view, generation, checkpoint, batches, json.dumps(rejected)),
        )
        # From now on, overwriting a cell last changed at or before here keeps its old row.
        self._conn.execute(
            "UPDATE view_generations SET snapshot_at = ? WHERE view = ? AND generation = ?",
            (checkpoint, view, generation),
        )

    def snapshots(self, view: str, generation: int) -> list[HistorySnapshot]:
        """The history snapshots of a generation, oldest first."""
        rows = self._conn.execute(
            "SELECT checkpoint, batches, rejected FROM view_snapshots "
            "WHERE view = ? AND generation = ? ORDER BY checkpoint",
            (view, generation),
        ).fetchall()
        return [HistorySnapshot(int(r[0]), int(r[1]), json.loads(r[2])) for r in rows]

    def state_at(self, view: str, generation: int, checkpoint: int) -> Iterator[StoredCell]:
        """Every cell (all levels) as it was at a history snapshot's ``checkpoint``: per cell,
        the version with the largest ``changed_at`` ≤ checkpoint, live or kept in history."""
        rows = self._conn.execute(
            "SELECT level, dims, bucket, max(changed_at), state FROM ("
            " SELECT level, dims, bucket, changed_at, state FROM view_cells"
            " WHERE view = ?1 AND generation = ?2 AND changed_at <= ?3"
            " UNION ALL"
            " SELECT level, dims, bucket, changed_at, state FROM view_history"
            " WHERE view = ?1 AND generation = ?2 AND changed_at <= ?3"
            ") GROUP BY level, dims, bucket ORDER BY level, dims, bucket",
            (view, generation, checkpoint),
        )
        for row in rows:
            yield StoredCell(row[1], int(row[2]), int(row[3]), bytes(row[4]), row[0])

    def size(self, view: str, generation: int) -> tuple[int, int]:
        row = self._conn.execute(
            "SELECT count(*), coalesce(sum(length(state)), 0) FROM view_cells "
            "WHERE view = ? AND generation = ?",
            (view, generation),
        ).fetchone()
        return int(row[0]), int(row[1])

    # -- the one maintainer ---------------------------------------------------------------------


def _generation(row: Any) -> Generation:
    return Generation(
        view=row[0],
        generation=int(row[1]),
        definition_hash=row[2],
        definition=json.loads(row[3]),
        checkpoint=int(row[4]),
        batches=int(row[5]),
        rejected=json.loads(row[6]),
        created_at=row[7],
    )


def _now() -> str:
    return datetime.now(UTC).isoformat()

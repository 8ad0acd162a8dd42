"""The incremental engine: one maintainer folds the log into a view, batch by batch.

Each micro-batch (at most ``batch_size`` source events) is read from the log into Arrow, run
through DuckDB (strict parsing, filter, extraction, buckets), grouped with numpy and folded
into the in-memory cells. Changed cells, reject counts and the checkpoint are committed together
in one SQLite transaction every ``commit_every_events`` events or ``commit_every_ms``
milliseconds (and whenever the view catches up), so a crash anywhere — even between writing
cells and committing — resumes from the last commit without counting an event twice or
skipping one. Late events simply update the bucket they belong to; every cell remembers the
position at which it last changed.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

import msgspec

from facta.collector import LiveSettler, collector_paused, settle_long_lived
from facta.views.compile import CompiledView, compile_view
from facta.views.grouping import ROLLUP, Key
from facta.views.measures import encode_cells
from facta.views.moments import SumOverflow
from facta.views.pipeline import Evaluated, Pipeline
from facta.views.prefetch import CommitsBehind, PagesAhead, quick_handoff
from facta.views.prepared import Level, Prepared, prepare
from facta.views.rejects import Rejects
from facta.views.rollups import Rollups
from facta.views.smallbatch import Declined, evaluate_small, handles
from facta.views.source import LogReader, Page
from facta.views.stacked import Part, StackedLevel, prepare_stacked
from facta.views.store import BASE_LEVEL, StoredCell, ViewStore

MAX_BATCH: Final = 50_000
# Between commits to the log a maintainer asks SQLite's data_version this often (a few µs each).
POLL_SECONDS: Final = 0.001
# ...and, after a second with no commit, this often (an idle maintainer costs next to nothing).
IDLE_POLL_SECONDS: Final = 0.02
HISTORY_EVERY: Final = 1_000_000
BUCKET_LEVEL: Final = 0


class ViewError(RuntimeError):
    """A view cannot go on (an exact integer sum overflowed, a definition changed, …)."""


class DefinitionChanged(ViewError):
    def __init__(self, view: str, stored: str, found: str) -> None:
        super().__init__(
            f"view {view!r} was built from definition {stored[:12]}, the given one is "
            f"{found[:12]}: rebuild it (facta views rebuild {view})"
        )


@dataclasses.dataclass(slots=True)
class Cell:
    states: list[Any]
    changed_at: int


@dataclasses.dataclass(frozen=True, slots=True)
class EngineSettings:
    batch_size: int = MAX_BATCH
    commit_every_events: int = MAX_BATCH
    commit_every_ms: float = 1000.0
    # A history snapshot (for as_of(position=P)) at the first commit past each multiple.
    history_every: int = HISTORY_EVERY
    # Pages of at most this many events skip DuckDB when the view allows it (see smallbatch),
    # and are prepared for all their levels in one stacked batch, grouped in plain Python
    # (see stacked).
    small_batch_events: int = 1000
    # Pages of at most this many events fold into the calendar roll-ups directly; larger ones
    # leave the roll-up cells above their buckets to be merged anew at the commit (see rollups).
    # By default every page folds directly: re-merging a month from its days at each commit
    # cost a rebuild more than feeding each page's rows to its few week and month cells, and
    # it ran in the engine's thread, after the page was folded (with a commit per page, over a
    # quarter of that thread's time, merging each month once per page that touched it).
    fold_rollups_events: int = MAX_BATCH

    def __post_init__(self) -> None:
        if not 1 <= self.batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be in 1..{MAX_BATCH}, found {self.batch_size}")
        if self.commit_every_events < 1 or self.commit_every_ms < 0:
            raise ValueError("commit_every_events must be >= 1 and commit_every_ms >= 0")
        if self.history_every < 1:
            raise ValueError(f"history_every must be >= 1, found {self.history_every}")


class ViewEngine:
    """Maintains one view. Take the lock with :meth:`open`; one engine per view at a time."""

    def __init__(
        self,
        log_path: str | os.PathLike[str],
        view: CompiledView,
        store: ViewStore,
        settings: EngineSettings | None = None,
        *,
        generation: int | None = None,
        after_batch: Callable[[ViewEngine], None] | None = None,
    ) -> None:
        self.view = view
        self.store = store
        self.settings = settings or EngineSettings()
        self._log_path = os.fspath(log_path)
        self._reader = LogReader(self._log_path, view.definition.source, view.log_columns())
        self._pipeline = Pipeline(view, self._log_path)
        self._after_batch = after_batch
        self._small = handles(view)
        self.small_pages = 0  # pages evaluated without DuckDB, and pages that path declined
        self.declined_pages = 0
        self.stacked_pages = 0  # pages prepared for every level in one batch (see stacked)
        self.generation = generation or 0
        self.cells: dict[Key, Cell] = {}
        self._dirty: set[Key] = set()
        self._rollups = Rollups(view)
        self._marks_rollups = self.settings.fold_rollups_events < self.settings.batch_size
        self._new_states = [m.new for m in view.measures]
        self.checkpoint = 0
        self.committed = 0
        self.batches = 0
        self.rejects = Rejects()
        self._pending_events = 0
        self._last_commit = time.monotonic()
        self._behind = CommitsBehind()
        self._log_version = -1
        self._commit_behind = False
        self._settler = LiveSettler()

    # -- lifecycle -------------------------------------------------------------------------------

    def open(self, *, fresh: bool = False) -> ViewEngine:
        """Lock the view and load its state; ``fresh`` starts a new generation (a rebuild)."""
        name = self.view.name
        self.store.lock(name)
        current = self.store.current(name)
        definition = self.view.definition.model_dump(mode="json")
        if fresh or current is None:
            self.generation = self.store.create_generation(
                name, self.view.definition_hash, definition
            )
            if current is None:
                self.store.activate(name, self.generation)
            return self
        if current.definition_hash != self.view.definition_hash:
            self.store.unlock(name)
            raise DefinitionChanged(name, current.definition_hash, self.view.definition_hash)
        self.generation = current.generation
        self.checkpoint = self.committed = current.checkpoint
        self.batches = current.batches
        self.rejects = Rejects(current.rejected)
        measures = self.view.measures
        for stored in self.store.cells(name, self.generation):
            raw = msgspec.msgpack.decode(stored.state)
            states = [m.load(r) for m, r in zip(measures, raw, strict=True)]
            self.cells[(stored.dims, stored.bucket)] = Cell(states, stored.changed_at)
        self._rollups.load(self.store, name, self.generation, Cell)
        self._rollups.index(key for key in self.cells if key[1] != ROLLUP)
        self._pipeline.prime(self.checkpoint)
        return self

    def close(self) -> None:
        try:
            self._settle()
        finally:
            self._behind.close()
        self._reader.close()
        self._pipeline.close()
        self.store.unlock(self.view.name)

    def __enter__(self) -> ViewEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def head(self) -> int:
        """The log's last position now."""
        return self._reader.head()

    # -- folding the log -------------------------------------------------------------------------

    def step(self, *, until: int | None = None) -> int:
        """Fold one micro-batch; return how many source events it held (0: caught up)."""
        page = self._reader.read(self.checkpoint, self.settings.batch_size, until=until)
        return self._advance(page, self._prepared(page))

    def _prepared(self, page: Page) -> Prepared | None:
        """A page evaluated and made ready to fold."""
        return self._ready(page, self._evaluate(page))

    def _ready(self, page: Page, evaluated: Evaluated | None) -> Prepared | None:
        """An evaluated page made ready to fold (state is not touched: any thread may)."""
        if evaluated is None:
            return None
        rows = page.events.num_rows
        direct = rows <= self.settings.fold_rollups_events
        # A small page (a live view's) is prepared for every level in one stacked batch; a
        # large one (a rebuild's) level by level, where numpy's per-call cost is amortised.
        small = rows <= self.settings.small_batch_events
        if direct and small and self.view.definition.bucket is not None:
            self.stacked_pages += 1
            return prepare_stacked(
                self.view, evaluated, self._rollups, self.settings.small_batch_events
            )
        return prepare(self.view, evaluated, self._rollups if direct else None)

    def _evaluate(self, page: Page) -> Evaluated | None:
        """A page through the small-page path if it is small enough and allowed, else DuckDB."""
        rows = page.events.num_rows
        if rows == 0:
            return None
        if self._small and rows <= self.settings.small_batch_events:
            try:
                evaluated = evaluate_small(self.view, page.events)
                self.small_pages += 1
                return evaluated
            except Declined:
                self.declined_pages += 1
        return self._pipeline.evaluate(page.events)

    def _advance(self, page: Page, prepared: Prepared | None) -> int:
        """Fold an evaluated page, move the checkpoint past it and commit when it is time."""
        if prepared is not None:
            with collector_paused():
                self._fold(prepared)
            self.batches += 1
        moved = page.scanned > self.checkpoint
        self.checkpoint = page.scanned
        self._pending_events += page.events.num_rows
        caught_up = page.events.num_rows < self.settings.batch_size
        elapsed_ms = (time.monotonic() - self._last_commit) * 1000
        if moved and (
            caught_up
            or self._pending_events >= self.settings.commit_every_events
            or elapsed_ms >= self.settings.commit_every_ms
        ):
            self.commit()
            if caught_up and not self._commit_behind:
                self._settler.settle()  # a live commit: keep full collections off the path
            else:
                # A commit inside a backlog (read ahead, or folded step by step as `facta
                # serve`'s maintainers do): freeze the cells it built, or the collector walks
                # them all in full collections — pauses of ~0.1 s for every thread.
                settle_long_lived()
        if self._after_batch is not None and page.events.num_rows:
            self._after_batch(self)
        return int(page.events.num_rows)

    def run(self, *, until: int | None = None) -> int:
        """Fold until caught up with the log head (or ``until``); return events folded.

        After a full first batch (a backlog), the next pages are read and evaluated in a second
        thread and commits are written in a third while this one prepares and folds (see
        ``prefetch``): DuckDB and SQLite release the GIL, so the stages overlap on two cores.
        Each page is still folded and committed in order, each commit in one transaction.
        """
        backlog = (self.head() if until is None else min(until, self.head())) - self.checkpoint
        if backlog > self.settings.batch_size and self._after_batch is None:
            total = self._run_ahead(until)
            if self.checkpoint > self.committed:
                self.commit()
            return total
        total = folded = self.step(until=until)
        if folded >= self.settings.batch_size and self._after_batch is None:
            total += self._run_ahead(until)
        while folded >= self.settings.batch_size and self._after_batch is not None:
            # A hook sees the engine between batches: keep every stage in this thread.
            folded = self.step(until=until)
            total += folded
        if self.checkpoint > self.committed:
            self.commit()
        return total

    def _run_ahead(self, until: int | None) -> int:
        # The collector stays paused for the whole backlog, not batch by batch: switched back on
        # after each fold, it ran a collection at once (allocations kept counting while it was
        # off), often a full one over every cell — about 7 % of a rebuild's CPU. And the page
        # thread gets the GIL back sooner (see quick_handoff).
        # Each commit freezes what the backlog built so far (see _advance), before the
        # collector is back on.
        with collector_paused(), quick_handoff():
            return self._pages_ahead(until)

    def _pages_ahead(self, until: int | None) -> int:
        # The worker only reads and evaluates (SQLite and DuckDB, which release the GIL); this
        # thread prepares and folds (numpy and sketches, which mostly hold it). See prefetch.
        ahead = PagesAhead(
            self._reader, self._evaluate, self.settings.batch_size, self._pipeline.texts_encoded
        )
        ahead.start(self.checkpoint, until)
        total = 0
        self._commit_behind = True
        try:
            while True:
                page, evaluated = ahead.next()
                folded = self._advance(page, self._ready(page, evaluated))
                total += folded
                if folded < self.settings.batch_size:
                    return total
        finally:
            self._commit_behind = False
            ahead.stop()
            self._settle()

    def _settle(self) -> None:
        """Wait for a commit written behind, and count it as committed."""
        done = self._behind.wait()
        if done is not None:
            self.committed = max(self.committed, done)

    def log_changed(self) -> bool:
        """Whether another connection committed to the log since the last call (True at first)."""
        version = self._reader.data_version()
        changed = version != self._log_version
        self._log_version = version
        return changed

    def commit(self) -> None:
        with collector_paused():
            self._commit()

    def _commit(self) -> None:
        # The changed bucket and all-time cells, then the calendar roll-ups above them (in the
        # same transaction), serialised in one pass: a few C calls per measure per commit.
        changed = [(BASE_LEVEL, key, self.cells[key]) for key in self._dirty]
        changed += self._rollups.changed(self.cells, Cell)
        raws = encode_cells(self.view.measures, [cell.states for _, _, cell in changed])
        cells = [
            StoredCell(key[0], key[1], cell.changed_at, raw, level)
            for (level, key, cell), raw in zip(changed, raws, strict=True)
        ]
        # In the table's key order: SQLite then walks its B-tree once instead of jumping about
        # (a rebuild's last commit writes every cell; about twice as fast so).
        cells.sort(key=lambda c: (c.level, c.dims, c.bucket))
        checkpoint = self.checkpoint
        write = functools.partial(
            self.store.commit,
            self.view.name,
            self.generation,
            cells,
            checkpoint=checkpoint,
            batches=self.batches,
            rejected=copy.deepcopy(self.rejects.as_json()),
            history_every=self.settings.history_every,
        )
        self._dirty.clear()
        self._pending_events = 0
        self._last_commit = time.monotonic()
        if self._commit_behind:
            # The cells are already serialised: folding the next page cannot change them.
            done = self._behind.submit(write, checkpoint)
            if done is not None:
                self.committed = max(self.committed, done)
            return
        self._settle()
        write()
        self.committed = checkpoint

    def _fold(self, prepared: Prepared) -> None:
        evaluated = prepared.evaluated
        self.rejects.add(evaluated.rejected_events, evaluated.rejected_values)
        self.rejects.add_unmatched(evaluated.unmatched)
        for level in prepared.levels:
            self._fold_groups(level)
        if self._rollups.levels and prepared.levels and self._marks_rollups:
            # Which bucket cells lie below each roll-up cell matters only to a roll-up cell
            # merged anew from them (an engine that folds large pages into the buckets only).
            first = prepared.levels[0]  # the bucket level (the all-time one is next)
            if isinstance(first, StackedLevel):
                bucket_part = first.parts[0]
                self._rollups.index(first.keys[bucket_part.start : bucket_part.end])
                return  # every level was folded directly
            self._rollups.index(first.keys)
            if not any(level.target for level in prepared.levels):
                self._rollups.mark(first.keys)  # a large page: merged anew at the commit

    def _fold_groups(self, level: Level) -> None:
        keys = level.keys
        parts = (
            level.parts if isinstance(level, StackedLevel) else (Part(level.target, 0, len(keys)),)
        )
        cells = []
        new = self._new_states
        for part in parts:
            if part.target:
                into = self._rollups.cells[part.target]
                dirty = self._rollups.dirty[part.target]
            else:
                into, dirty = self.cells, self._dirty
            part_keys = keys[part.start : part.end]
            changed_at = level.changed_at[part.start : part.end]
            for key, position in zip(part_keys, changed_at, strict=True):
                cell = into.get(key)
                if cell is None:
                    cell = Cell([make() for make in new], 0)
                    into[key] = cell
                cell.changed_at = max(cell.changed_at, position)
                cells.append(cell)
            dirty.update(part_keys)
        for index, measure in enumerate(self.view.measures):
            try:
                measure.update([c.states[index] for c in cells], level.batch)
            except SumOverflow as exc:
                dims, start = keys[exc.group]
                target = next(p.target for p in parts if p.start <= exc.group < p.end)
                if start == ROLLUP:
                    where = "all time"
                elif target:
                    where = f"{target} roll-up starting {start}"
                else:
                    where = f"bucket {start}"
                raise ViewError(
                    f"view {self.view.name!r}, measure {measure.name!r}, group {dims} "
                    f"{where}: {exc}"
                ) from None


def poll_wait(active: float) -> float:
    """Seconds to wait before asking the log's ``data_version`` again, ``active`` being the last
    moment a commit was folded: ``POLL_SECONDS``, or ``IDLE_POLL_SECONDS`` after an idle second."""
    return POLL_SECONDS if time.monotonic() - active < 1.0 else IDLE_POLL_SECONDS


def follow(
    engines: list[ViewEngine],
    stop: threading.Event,
    on_run: Callable[[int], None] | None = None,
) -> None:
    """Keep every view of ``engines`` up to date until ``stop`` is set.

    Between commits to the log only ``PRAGMA data_version`` is read (see :func:`poll_wait`); a
    commit by any process starts a run of the views it concerns at once (a fold and a commit
    within a few milliseconds of the append at live rates). ``on_run`` hears how many events
    each round folded.
    """
    active = time.monotonic()
    while not stop.is_set():
        folded = sum(engine.run() for engine in engines if engine.log_changed())
        if on_run is not None:
            on_run(folded)
        if folded:
            active = time.monotonic()
        else:
            stop.wait(poll_wait(active))


def rebuild(
    log_path: str | os.PathLike[str],
    view: CompiledView,
    store: ViewStore,
    settings: EngineSettings | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> ViewEngine:
    """Build ``view`` from the start of the log beside the live one, then swap generations.

    Readers keep using the old generation until the new one has caught up with the head as it
    was when the rebuild started; the swap is one row update. The returned engine holds the
    lock and may keep following the log; close it when done.
    """
    engine = ViewEngine(log_path, view, store, settings).open(fresh=True)
    try:
        head = engine.head()
        while engine.step(until=head):
            if progress is not None:
                progress(engine.checkpoint, head)
        engine.run(until=head)
        if progress is not None:
            progress(engine.checkpoint, head)
        store.activate(view.name, engine.generation)
    except BaseException:
        engine.close()
        raise
    return engine


def state_at(log_path: str | os.PathLike[str], view: CompiledView, position: int) -> ViewStore:
    """The view exactly as it was at checkpoint ``position``, built by replay in memory.

    Returns an in-memory store holding that state; query it with ``open_snapshot``. (History
    snapshots to shorten the replay are not kept yet: this replays from the start of the log.)
    """
    store = ViewStore(":memory:")
    with ViewEngine(log_path, view, store).open() as engine:
        engine.run(until=position)
    return store


def state_known_at(
    log_path: str | os.PathLike[str], view: CompiledView, moment: datetime
) -> ViewStore:
    """The view as it could have been known at ``moment``: only events the log had recorded by
    then (``_recorded_at <= moment``), built by replay in memory. Combine with
    ``snapshot.as_of(event_time=moment)`` to also keep only buckets that had ended — no later
    fact leaks into the result.
    """
    if moment.tzinfo is None:
        raise ValueError(f"known_at needs an aware time, found naive {moment.isoformat()}")
    stamp = moment.astimezone(UTC).isoformat()
    known = f"_recorded_at <= TIMESTAMPTZ '{stamp}'"
    original = view.definition.filter
    condition = known if original is None else f"({original}) AND {known}"
    variant = compile_view(view.definition.model_copy(update={"filter": condition}))
    store = ViewStore(":memory:")
    with ViewEngine(log_path, variant, store).open() as engine:
        engine.run()
    return store

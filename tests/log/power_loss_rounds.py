"""Rounds of writing, cutting the power and rebooting a log on the power-loss VFS.

Each round reopens the log on the files a previous cut left behind (SQLite recovers the WAL),
checks it against everything its writers were told so far, arms a cut, lets several threads
append until the power goes, closes the dead log and lets the VFS decide which unsynced
writes reached the disk.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import random
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import apsw

from facta.log import AppendResult, Durability, FactaError, LogConfig, SqliteLog
from tests.log.durability_check import (
    AppendPlanner,
    AppendSpec,
    DurabilityViolation,
    check_recovered,
)
from tests.log.powerloss_vfs import IoOp, PowerLossVFS

LogFactory = Callable[[Path, LogConfig, str | None], SqliteLog]


def open_log(path: Path, config: LogConfig, vfs: str | None) -> SqliteLog:
    return SqliteLog(path, config, vfs=vfs)


@dataclasses.dataclass
class PowerLossRun:
    """What the rounds did, so a test can assert it did enough."""

    cuts: int = 0
    cuts_mid_io: int = 0  # the cut fired inside a write, truncate or sync
    cuts_at_wal_sync: int = 0
    cuts_discarding_writes: int = 0  # the cut threw away at least one unsynced operation
    torn_writes: int = 0
    acknowledged: int = 0
    acknowledged_checked: int = 0  # summed over every check
    acknowledged_lost: int = 0  # allowed only under durability="normal"
    keys_replayed: int = 0
    checkpoints: int = 0  # background WAL checkpoints completed inside rounds
    cuts_in_checkpoint: int = 0  # the cut fired inside a checkpoint's copy into the database file
    events_at_end: int = 0


@dataclasses.dataclass
class _Record:
    attempted: dict[str, AppendSpec] = dataclasses.field(default_factory=dict)
    acked: dict[str, AppendResult] = dataclasses.field(default_factory=dict)
    errors: list[BaseException] = dataclasses.field(default_factory=list)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)


def run_power_loss_rounds(
    path: Path,
    *,
    durability: Durability,
    rounds: int,
    seed: int,
    factory: LogFactory = open_log,
    writers: int = 4,
    appends_per_round: int = 120,
    full_sync_only: bool = False,
) -> PowerLossRun:
    """Write, cut and recover ``rounds`` times; raise DurabilityViolation at the first breach.

    Small WAL thresholds make the background checkpointer run (and get cut) inside rounds.
    """
    rng = random.Random(seed)
    config = LogConfig(
        durability=durability, wal_checkpoint_bytes=32 * 1024, wal_max_bytes=512 * 1024
    )
    factory(path, config, None).close()
    vfs = PowerLossVFS(f"powerloss-{uuid.uuid4().hex[:12]}", full_sync_only=full_sync_only)
    record = _Record()
    run = PowerLossRun()
    last_round: list[str] = []
    try:
        for round_no in range(rounds):
            log = _reopen(factory, path, config, vfs.name)
            try:
                _check(log, record, run, durability, last_round)
                # Every fourth round cuts a checkpoint; a third of the others cut at a WAL sync.
                draw = rng.random()
                checkpoint_cut = round_no % 4 == 2
                wal_sync_cut = not checkpoint_cut and draw < 0.35
                if wal_sync_cut:
                    vfs.arm(_nth_wal_sync(rng.randint(1, 6)))
                elif checkpoint_cut:
                    vfs.arm(_nth_database_write(path, rng.randint(1, 8)))
                else:
                    vfs.arm_after(rng.randint(1, 500))
                before = set(record.acked)
                # A round armed to cut a checkpoint writes on until one runs (bounded), however
                # slowly the checkpointer thread gets a core.
                budget = appends_per_round * (20 if checkpoint_cut else 1)
                _write_until_cut(log, vfs, record, round_no, rng, writers, budget)
                last_round = [a for a in record.acked if a not in before]
                if record.errors:
                    raise record.errors[0]
                if vfs.cut_at is not None:
                    run.cuts_mid_io += 1
                    run.cuts_at_wal_sync += wal_sync_cut
                    run.cuts_in_checkpoint += checkpoint_cut
                else:
                    vfs.cut()  # the writers ran out of appends first: cut at rest
            finally:
                run.checkpoints += log.metrics.checkpoints
                with contextlib.suppress(apsw.Error):
                    log.close()  # a dead machine: the closing checkpoint fails
            report = vfs.power_cut(rng)
            run.cuts += 1
            run.cuts_discarding_writes += report.lost_operations > 0
            run.torn_writes += len(report.torn)
        # last, the real files alone, without the shim
        with contextlib.closing(_reopen(factory, path, config, None)) as log:
            _check(log, record, run, durability, last_round)
            run.events_at_end = log.head_sync()
    finally:
        vfs.unregister()
    run.acknowledged = len(record.acked) + run.acknowledged_lost
    return run


def _reopen(factory: LogFactory, path: Path, config: LogConfig, vfs: str | None) -> SqliteLog:
    try:
        return factory(path, config, vfs)
    except apsw.Error as exc:
        raise DurabilityViolation("unreadable", f"reopening {path} failed: {exc!r}") from exc


def _check(
    log: SqliteLog,
    record: _Record,
    run: PowerLossRun,
    durability: Durability,
    last_round: list[str],
) -> None:
    present = [a for a in last_round if a in record.acked]
    report = check_recovered(
        log,
        record.attempted,
        record.acked,
        lost_allowed=durability == "normal",
        replay=[a for a in present if record.attempted[a].key is not None][:40],
    )
    for append_id in report.lost:
        del record.acked[append_id]
    run.acknowledged_lost += len(report.lost)
    run.acknowledged_checked += report.acked_checked
    run.keys_replayed += report.keys_replayed


def _nth_wal_sync(n: int) -> Callable[[IoOp], bool]:
    seen = itertools.count(1)

    def trigger(op: IoOp) -> bool:
        return op.kind == "sync" and op.path.endswith("-wal") and next(seen) >= n

    return trigger


def _nth_database_write(path: Path, n: int) -> Callable[[IoOp], bool]:
    """In WAL mode only a checkpoint writes the database file itself, so this cuts one."""
    seen = itertools.count(1)
    database = path.name

    def trigger(op: IoOp) -> bool:
        return op.kind == "write" and Path(op.path).name == database and next(seen) >= n

    return trigger


def _write_until_cut(
    log: SqliteLog,
    vfs: PowerLossVFS,
    record: _Record,
    round_no: int,
    rng: random.Random,
    writers: int,
    budget: int,
) -> None:
    tickets = itertools.count()
    planners = [
        AppendPlanner(f"r{round_no}-w{w}", random.Random(rng.random())) for w in range(writers)
    ]

    def write(planner: AppendPlanner) -> None:
        while not vfs.is_cut and next(tickets) < budget:
            spec = planner.next()
            with record.lock:
                record.attempted[spec.id] = spec
            try:
                result = spec.submit_sync(log)
            except (FactaError, apsw.Error) as exc:
                if not vfs.is_cut:
                    with record.lock:
                        record.errors.append(exc)
                return
            with record.lock:
                record.acked[spec.id] = result

    threads = [threading.Thread(target=write, args=(p,)) for p in planners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

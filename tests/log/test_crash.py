"""Crash: kill writer processes at random moments; every acknowledged append survives.

A child process (``crash_writer.py``) appends continuously from three threads and three asyncio
tasks, journaling each append before submitting it and its answer after it returned. The test
kills it (SIGKILL on POSIX), reopens the log and checks it against every journal so far: the
acknowledged appends are at their positions with their data, positions have no hole, no
append is partly present, keys of acknowledged appends replay.
"""

from __future__ import annotations

import dataclasses
import random
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest
from durability_check import AppendSpec, DurabilityViolation, check_recovered

from facta.log import AppendResult, SqliteLog

CHILD = Path(__file__).with_name("crash_writer.py")
KILLS = 22
KILL_AT_RANDOM_TIME_EVERY = 4  # every 4th kill ignores progress: it may land in start-up


class JournalLine(msgspec.Struct):
    start: AppendSpec | None = None
    ack: tuple[str, AppendResult] | None = None
    error: str | None = None


_line_decoder = msgspec.json.Decoder(JournalLine)


@dataclasses.dataclass
class Journal:
    started: dict[str, AppendSpec]
    acked: dict[str, AppendResult]
    errors: list[str]


def read_journal(path: Path) -> Journal:
    journal = Journal({}, {}, [])
    if not path.exists():
        return journal
    *whole, _torn_or_empty = path.read_bytes().split(b"\n")
    for raw in whole:
        line = _line_decoder.decode(raw)
        if line.start is not None:
            journal.started[line.start.id] = line.start
        if line.ack is not None:
            journal.acked[line.ack[0]] = line.ack[1]
        if line.error is not None:
            journal.errors.append(line.error)
    return journal


def wait_for_acks(child: subprocess.Popen[bytes], journal: Path, acks: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise AssertionError(f"writer exited by itself with {child.returncode}")
        if journal.exists() and journal.read_bytes().count(b'{"ack"') >= acks:
            return
        time.sleep(0.005)
    raise AssertionError(f"writer did not acknowledge {acks} appends within 30 s")


@dataclasses.dataclass
class CrashTally:
    kills: int = 0
    kills_in_flight: int = 0  # appends started and not acknowledged when the kill landed
    kills_committed_unacked: int = 0  # ... and at least one of them turned out committed
    acknowledged: int = 0
    acknowledged_checked: int = 0
    keys_replayed: int = 0


def kill_writers(path: Path, journals: Path, kills: int, seed: int, variant: str) -> CrashTally:
    """Start a writer, kill it, check the reopened log; ``kills`` times. Raise
    DurabilityViolation at the first breach."""
    rng = random.Random(seed)
    attempted: dict[str, AppendSpec] = {}
    acked: dict[str, AppendResult] = {}
    tally = CrashTally()
    for round_no in range(kills):
        durability = "strict" if round_no % 2 == 0 else "normal"
        journal_path = journals / f"journal-{round_no}.jsonl"
        child = subprocess.Popen(
            [
                sys.executable,
                str(CHILD),
                str(path),
                str(journal_path),
                str(round_no),
                durability,
                str(rng.randrange(2**32)),
                variant,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            if round_no % KILL_AT_RANDOM_TIME_EVERY == KILL_AT_RANDOM_TIME_EVERY - 1:
                time.sleep(rng.uniform(0.0, 0.4))
            else:
                wait_for_acks(child, journal_path, rng.randint(1, 60))
                time.sleep(rng.uniform(0.0, 0.01))
        finally:
            child.kill()
            _, stderr = child.communicate()
        assert child.returncode == -9 or sys.platform == "win32", stderr.decode()
        tally.kills += 1

        journal = read_journal(journal_path)
        assert journal.errors == [], journal.errors
        attempted.update(journal.started)
        acked.update(journal.acked)
        in_flight = set(journal.started) - set(journal.acked)
        tally.kills_in_flight += bool(in_flight)

        with SqliteLog(path) as log:
            report = check_recovered(
                log,
                attempted,
                acked,
                lost_allowed=False,
                replay=list(journal.acked),
            )
        tally.kills_committed_unacked += bool(in_flight & report.present)
        tally.acknowledged_checked += report.acked_checked
        tally.keys_replayed += report.keys_replayed
    tally.acknowledged = len(acked)
    return tally


def test_sigkilled_writers_lose_no_acknowledged_append(tmp_path: Path) -> None:
    tally = kill_writers(tmp_path / "crash.db", tmp_path, KILLS, seed=20261126, variant="correct")
    print(f"crash: {tally}")
    assert tally.kills >= 20
    assert tally.kills_in_flight >= 10, tally
    assert tally.acknowledged >= 300, tally
    assert tally.acknowledged_checked >= tally.acknowledged, tally
    assert tally.keys_replayed >= 100, tally


def test_a_writer_splitting_appends_over_transactions_is_caught_after_a_kill(
    tmp_path: Path,
) -> None:
    with pytest.raises(DurabilityViolation) as caught:
        kill_writers(tmp_path / "split.db", tmp_path, 10, seed=7, variant="split-append")
    assert caught.value.kind == "partial", caught.value

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import apsw

from facta.entities import Runtime, Transaction
from facta.entities.processor_runner import ProcessorRunner
from facta.entities.trace import render, trace
from facta.log import SqliteLog
from tests.entities.kinds import Account, Deposit, Withdraw
from tests.entities.processor_worker import NOTIFY


async def _transfer(tx: Transaction) -> None:
    await tx.entity(Account, "a").send(Withdraw(150))
    await tx.entity(Account, "b").send(Deposit(150))


def _story(log: SqliteLog) -> None:
    async def main() -> None:
        runtime = Runtime(log)
        await runtime.entity(Account, "a").send(Deposit(500), command_id="open-a")
        await runtime.transact(_transfer, command_id="t-17")
        await ProcessorRunner(runtime, NOTIFY, batch_ms=1).run_to_head()

    asyncio.run(main())


def test_trace_of_a_command_shows_its_events_and_their_effects(log: SqliteLog) -> None:
    _story(log)
    tree = trace(log, "t-17")
    assert tree.event is None and tree.id == "t-17"
    assert [c.event.type for c in tree.children if c.event] == ["Withdrawn", "Deposited"]
    deposited = tree.children[1]
    assert deposited.event is not None
    effects = sorted(c.event.type for c in deposited.children if c.event)
    assert effects == ["Counted", "LargeDeposit"]
    text = render(tree)
    assert text.splitlines()[0] == "command t-17"
    assert "└── #" in text and "LargeDeposit" in text
    # From an effect's id, the same tree, with that event marked.
    note = log.read_stream_sync("notifications")[-1]
    by_event = render(trace(log, str(note.id)), marked=str(note.id))
    assert by_event.replace("  <==", "") == text and "LargeDeposit" in by_event


def test_trace_reads_the_chain_through_the_causality_index(log: SqliteLog) -> None:
    _story(log)
    conn = apsw.Connection(log.path)
    plan = " ".join(
        str(row)
        for row in conn.execute(
            "EXPLAIN QUERY PLAN SELECT * FROM events WHERE correlation_id IN (?)", ("t-17",)
        )
    )
    conn.close()
    assert "events_causality" in plan and "SCAN events" not in plan


def test_cli_trace_and_processors(log_path: Path) -> None:
    with SqliteLog(log_path) as log:
        _story(log)
    cli = [sys.executable, "-m", "facta.entities.cli"]
    out = subprocess.run(
        [*cli, "trace", "t-17", "--log", str(log_path)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("command t-17") and "Withdrawn" in out.stdout
    missing = subprocess.run(
        [*cli, "trace", "nope", "--log", str(log_path)], capture_output=True, text=True
    )
    assert missing.returncode == 1 and "no event or command with id 'nope'" in missing.stderr
    listed = subprocess.run(
        [*cli, "processors", "--log", str(log_path)], capture_output=True, text=True
    )
    assert listed.returncode == 0, listed.stderr
    [row] = listed.stdout.splitlines()[1:]
    assert row.split()[:2] == ["notify", "ok"]
    bad = subprocess.run(
        [*cli, "processors", "skip", "notify", "1", "--log", str(log_path)],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1 and "skip needs a later position" in bad.stderr

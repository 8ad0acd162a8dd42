"""The Jepsen-style bank check: client processes, a chaos loop of SIGKILLs, the checker.

``run_bank_check`` sets up ``accounts`` accounts, starts ``clients`` client processes on one
log file, SIGKILLs one at random every few hundred milliseconds and restarts it (it re-sends
its pending command ids), then kills them all, lets each drain its pending transfers, and
checks the histories against the log. ``facta bench bank --minutes N`` runs it longer.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from facta.entities import Runtime
from facta.log import SqliteLog
from facta.testing.bank_history import BankReport, check
from facta.testing.bank_model import Account, Deposit, account_id


async def _setup(log_path: Path, accounts: int, initial: int) -> None:
    with SqliteLog(log_path) as log:
        runtime = Runtime(log)
        for i in range(accounts):
            await runtime.entity(Account, account_id(i)).send(
                Deposit(initial), command_id=f"init-{i}"
            )
        await runtime.aclose()


def _in_flight(history: Path) -> bool:
    """Did the client die with a transfer invoked and not completed?"""
    try:
        lines = history.read_bytes().splitlines()
    except FileNotFoundError:
        return False
    for raw in reversed(lines):
        try:
            record = json.loads(raw)
        except json.JSONDecodeError:
            continue
        if record["type"] == "note":
            continue
        return bool(record["type"] == "invoke" and record["f"] == "transfer")
    return False


def _acknowledged(histories: list[Path]) -> int:
    marker = b'"type": "ok", "f": "transfer"'
    return sum(h.read_bytes().count(marker) for h in histories if h.exists())


def run_bank_check(
    workdir: Path,
    *,
    seconds: float,
    clients: int = 4,
    accounts: int = 8,
    initial: int = 100,
    seed: int = 0,
    variant: str = "correct",
    kill_every: tuple[float, float] = (0.15, 0.5),
    timeouts: float = 0.05,
    min_ok: int = 0,
    tasks: int = 1,
) -> BankReport:
    """Run the check, ``tasks`` operations at once in each client process; the chaos goes on
    past ``seconds`` (up to 5x, and at least a minute) until ``min_ok`` transfers were
    acknowledged, so a slow or loaded machine cannot make a run vacuous (restarted clients
    there spend most of their life importing)."""
    import asyncio

    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "bank.db"
    asyncio.run(_setup(log_path, accounts, initial))
    rng = random.Random(seed)
    histories = [workdir / f"history-{c}.jsonl" for c in range(clients)]
    env = {**os.environ, "PYTHONHASHSEED": str(seed)}

    def spawn(client: int, mode: str = "run") -> subprocess.Popen[bytes]:
        args = [
            str(log_path),
            str(histories[client]),
            str(client),
            str(seed),
            variant,
            str(accounts),
            mode,
            str(timeouts),
            str(tasks),
        ]
        return subprocess.Popen(
            [sys.executable, "-m", "facta.testing.bank_client", *args],
            env=env,
            stderr=subprocess.PIPE if mode == "drain" else None,
        )

    def written(client: int) -> int:
        path = histories[client]
        return path.stat().st_size if path.exists() else 0

    kills = in_flight = 0
    procs = [spawn(c) for c in range(clients)]
    # A client is killed only once it has written to its history since it was (re)started: on a
    # loaded machine a restarted client spends a second importing, and killing it then again and
    # again would leave the run with kills but no work.
    started_at = [written(c) for c in range(clients)]
    deadline = time.monotonic() + seconds
    try:
        hard_deadline = time.monotonic() + max(5 * seconds, 60.0)
        while time.monotonic() < deadline or (
            _acknowledged(histories) < min_ok and time.monotonic() < hard_deadline
        ):
            time.sleep(rng.uniform(*kill_every))
            victim = rng.randrange(clients)
            if procs[victim].poll() is None and written(victim) == started_at[victim]:
                continue  # still starting up
            if procs[victim].poll() is None:
                os.kill(procs[victim].pid, signal.SIGKILL)
                procs[victim].wait()
                kills += 1
                in_flight += _in_flight(histories[victim])
            started_at[victim] = written(victim)
            procs[victim] = spawn(victim)
    finally:
        for c, proc in enumerate(procs):
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                kills += 1
                in_flight += _in_flight(histories[c])
    drains = [spawn(c, "drain") for c in range(clients)]
    for proc in drains:
        with contextlib.suppress(subprocess.TimeoutExpired):
            _, err = proc.communicate(timeout=120)
            if proc.returncode != 0:
                raise RuntimeError(f"a draining client failed: {err.decode()[-2000:]}")
    report = check(log_path, [h for h in histories if h.exists()], accounts, accounts * initial)
    report.kills, report.kills_in_flight = kills, in_flight
    return report

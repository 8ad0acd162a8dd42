"""``facta bench entities`` and ``facta bench bank``: the write side, measured.

Same method as ``facta bench log``: every line alternates a baseline run and a facta run on
fresh logs (A B A B A B), reports the median of the per-pair ratios, and records the load
average. The baselines are the log's own append paths measured in the same run, so the ratio
says what the runtime (lookups, deciding, outcomes, transactions) costs on top of the log.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any

import apsw
import typer

from facta.entities.errors import DomainError, TransactionConflict
from facta.entities.runtime import Runtime
from facta.entities.transaction import Transaction
from facta.log.event import NewEvent, StreamAppend
from facta.log.sqlite import SqliteLog

Run = tuple[float, dict[str, Any]]


class _Overdraft(DomainError):
    pass


class _Account:
    name = "acct"
    initial = 0

    @staticmethod
    def decide(command: tuple[str, int], balance: int) -> list[NewEvent]:
        kind, amount = command
        if kind == "withdraw" and amount > balance:
            raise _Overdraft(balance, amount)
        return [
            NewEvent(
                type="Deposited" if kind == "deposit" else "Withdrawn", data={"amount": amount}
            )
        ]

    @staticmethod
    def evolve(balance: int, event: NewEvent) -> int:
        amount = int(event.data["amount"])
        return balance + amount if event.type == "Deposited" else balance - amount


def _fresh() -> tuple[tempfile.TemporaryDirectory[str], str]:
    folder = tempfile.TemporaryDirectory(prefix="facta-bench-")
    return folder, os.path.join(folder.name, "facta.db")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q * len(ordered) + 0.5)))
    return ordered[rank - 1]


# -- sequential commands -----------------------------------------------------------------------


async def _sequential_appends(n: int) -> Run:
    folder, path = _fresh()
    with folder, SqliteLog(path) as log:
        started = time.perf_counter()
        for i in range(n):
            await log.append("acct-0", [NewEvent(type="Deposited", data={"amount": 1})], expect=i)
        return n / (time.perf_counter() - started), {}


async def _sequential_commands(n: int) -> Run:
    folder, path = _fresh()
    with folder, SqliteLog(path) as log:
        runtime = Runtime(log)
        account = runtime.entity(_Account, "0")
        started = time.perf_counter()
        for i in range(n):
            await account.send(("deposit", 1), command_id=f"cmd-{i}")
        rate = n / (time.perf_counter() - started)
        if await account.state() != n or log.stats_sync().outcomes != n:
            raise RuntimeError("sequential commands did not record every event and outcome")
        await runtime.aclose()
        return rate, {}


# -- concurrent transfers ------------------------------------------------------------------------


async def _concurrent_appends(total: int, clients: int) -> Run:
    folder, path = _fresh()
    with folder, SqliteLog(path) as log:
        per = total // clients
        latencies: list[float] = []

        async def client(c: int) -> None:
            for i in range(per):
                began = time.perf_counter()
                await log.append(f"caller-{c}", [NewEvent(type="Noted", data={"i": i})], expect=i)
                latencies.append(time.perf_counter() - began)

        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(client(c) for c in range(clients)))
        rate = per * clients / (time.perf_counter() - started)
        return rate, {
            "baseline_p99_ms": round(_percentile(latencies, 0.99) * 1000, 2),
            "baseline_cpu_us": round((time.process_time() - cpu) / (per * clients) * 1e6, 1),
        }


async def _transfers(total: int, clients: int, accounts: int, seed: int) -> Run:
    folder, path = _fresh()
    with folder, SqliteLog(path) as log:
        initial = 10**9
        log.append_many_sync(
            [
                StreamAppend(
                    f"acct-{i}", (NewEvent(type="Deposited", data={"amount": initial}),), 0
                )
                for i in range(accounts)
            ]
        )
        runtime = Runtime(log)
        rng = random.Random(seed)
        per = total // clients
        latencies: list[float] = []
        first_try: list[float] = []  # latencies of the transfers that ran once
        refused = 0

        def transfer(
            a: int, b: int, amount: int, runs: list[int]
        ) -> Callable[[Transaction], Awaitable[None]]:
            async def run(tx: Transaction) -> None:
                runs.append(1)
                await tx.entity(_Account, str(a)).send(("withdraw", amount))
                await tx.entity(_Account, str(b)).send(("deposit", amount))

            return run

        async def client(c: int) -> None:
            nonlocal refused
            for i in range(per):
                a, b = rng.sample(range(accounts), 2)
                runs: list[int] = []
                began = time.perf_counter()
                try:
                    await runtime.transact(
                        transfer(a, b, rng.randint(1, 100), runs),
                        command_id=f"t-{c}-{i}",
                        retries=50,
                    )
                except (TransactionConflict, DomainError):
                    refused += 1
                latency = time.perf_counter() - began
                latencies.append(latency)
                if len(runs) == 1:
                    first_try.append(latency)

        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(client(c) for c in range(clients)))
        seconds = time.perf_counter() - started
        cpu_us = (time.process_time() - cpu) / (per * clients) * 1e6
        states = [await runtime.entity(_Account, str(i)).state() for i in range(accounts)]
        if sum(states) != initial * accounts:
            raise RuntimeError(f"total not conserved: {sum(states)} != {initial * accounts}")
        done = per * clients - refused
        stats = runtime.stats
        attempts = max(1, per * clients)
        extra = {
            "transfers": done,
            "p50_ms": round(_percentile(latencies, 0.5) * 1000, 2),
            "p99_ms": round(_percentile(latencies, 0.99) * 1000, 2),
            # The p99 of the transfers that never retried: how much retries add to the tail.
            "first_try_p99_ms": round(_percentile(first_try or [0.0], 0.99) * 1000, 2),
            "retried_share": round(1 - len(first_try) / attempts, 4),
            "retry_rate": round(stats.transaction_conflicts / attempts, 4),
            "stale_read_rate": round(stats.stale_reads / attempts, 4),
            "abort_rate": round(refused / attempts, 4),
            "cpu_us": round(cpu_us, 1),
            "lookups_per_job": round(runtime.lookups.asked / max(1, runtime.lookups.jobs), 1),
        }
        await runtime.aclose()
        return done / seconds, extra


# -- lines ---------------------------------------------------------------------------------------


def _line(
    name: str,
    unit: str,
    baseline_name: str | None,
    goal: float | None,
    runs: list[tuple[Run | None, Run]],
    extra: dict[str, Any],
) -> dict[str, Any]:
    facta = [r[1][0] for r in runs]
    line: dict[str, Any] = {"name": name, "value": round(statistics.median(facta), 1), "unit": unit}
    if baseline_name is not None:
        ratios = [f[0] / b[0] for b, f in runs if b is not None]
        line.update(
            {
                "baseline_name": baseline_name,
                "baseline_value": round(statistics.median([b[0] for b, _ in runs if b]), 1),
                "ratio": round(statistics.median(ratios), 3),
                "goal": goal,
                "meets_goal": goal is None or statistics.median(ratios) >= goal,
                "pair_ratios": [round(r, 3) for r in ratios],
            }
        )
    for key in runs[-1][1][1]:
        values = [r[1][1][key] for r in runs]
        line[key] = statistics.median(values)
    baselines = [b for b, _ in runs if b is not None]
    for key in baselines[-1][1] if baselines else ():
        line[key] = statistics.median([b[1][key] for b in baselines])
    line.update(extra)
    line["driver"] = f"apsw {apsw.apsw_version()}"
    line["sqlite_version"] = apsw.sqlite_lib_version()
    line["loadavg"] = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    return line


ENTITY_BENCHES = ("command_single_entity_strict", "transfer_concurrent_strict", "transfer_hot")


def bench_entities(
    pairs: int = 3,
    commands: int = 2000,
    transfers: int = 100_000,
    clients: int = 64,
    only: Sequence[str] = ENTITY_BENCHES,
) -> Iterator[dict[str, Any]]:
    """Yield the JSON lines of ``facta bench entities`` (those named in ``only``)."""
    # Imported here: ``facta.bench`` registers this module's commands when it is imported.
    from facta.bench.method import chosen

    only = chosen(only, ENTITY_BENCHES)
    runs: list[tuple[Run | None, Run]] = []
    if "command_single_entity_strict" in only:
        for _ in range(pairs):
            base = asyncio.run(_sequential_appends(commands))
            runs.append((base, asyncio.run(_sequential_commands(commands))))
        yield _line(
            "command_single_entity_strict",
            "commands/s",
            "append_sequential_strict",
            0.7,
            runs,
            {"n": commands},
        )
    if "transfer_concurrent_strict" in only:
        runs = []
        for pair in range(pairs):
            base = asyncio.run(_concurrent_appends(transfers, clients))
            runs.append((base, asyncio.run(_transfers(transfers, clients, 1000, pair))))
        line = _line(
            "transfer_concurrent_strict",
            "transfers/s",
            "append_concurrent_strict",
            0.25,
            runs,
            {"n": transfers, "clients": clients, "accounts": 1000},
        )
        line["meets_goal"] = bool(line["meets_goal"]) and line["p99_ms"] <= 20
        yield line
    if "transfer_hot" in only:
        hot: list[tuple[Run | None, Run]] = [
            (None, asyncio.run(_transfers(transfers // 10, clients, 10, p))) for p in range(pairs)
        ]
        yield _line(
            "transfer_hot",
            "transfers/s",
            None,
            None,
            hot,
            {"n": transfers // 10, "clients": clients, "accounts": 10},
        )


def entities_command(
    pairs: Annotated[int, typer.Option(help="baseline/facta pairs per line")] = 3,
    commands: Annotated[int, typer.Option(help="sequential commands per run")] = 2000,
    transfers: Annotated[int, typer.Option(help="transfers per run (goal: >= 100000)")] = 100_000,
    clients: Annotated[int, typer.Option(help="concurrent clients")] = 64,
    only: Annotated[
        list[str] | None,
        typer.Option("--only", help="run only this line (repeatable)"),
    ] = None,
) -> None:
    """Benchmark commands and transactions against the log's own appends (JSON lines)."""
    from facta.bench.method import chosen

    try:
        names = chosen(only, ENTITY_BENCHES)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--only") from None
    for line in bench_entities(pairs, commands, transfers, clients, names):
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()


def bank_command(
    minutes: Annotated[float, typer.Option(help="how long the chaos runs")] = 5.0,
    clients: Annotated[int, typer.Option(help="client processes")] = 4,
    seed: Annotated[int, typer.Option(help="seed of the chaos and the clients")] = 0,
    workdir: Annotated[Path | None, typer.Option(help="keep the log and histories here")] = None,
) -> None:
    """The Jepsen-style bank check, longer: prints its report as one JSON line."""
    from facta.testing.bank_chaos import run_bank_check

    folder = workdir or Path(tempfile.mkdtemp(prefix="facta-bank-"))
    report = run_bank_check(folder, seconds=minutes * 60, clients=clients, seed=seed)
    sys.stdout.write(
        json.dumps(
            {"name": "bank", "valid": report.valid, "workdir": str(folder), **report.summary()}
        )
        + "\n"
    )
    if not report.valid:
        raise typer.Exit(1)

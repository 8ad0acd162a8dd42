"""The checker of the Jepsen-style bank test: histories against the log.

Every transfer the clients attempted is classified by its history: ``ok`` (acknowledged),
``fail`` (refused or given up: definitely not applied) or ``info`` (indeterminate: the client
never learned). The log says how often each was applied (its withdrawal events carry the
command id). The checks: a fail was applied 0 times, an info 0 or 1 times, an ok exactly once;
every read sums to the initial total and shows no negative balance; replaying the log never
takes an account below zero and ends at the total; the runtime's final balances equal the
replay.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections import Counter
from pathlib import Path
from typing import Any

from facta.entities import Runtime
from facta.log import SqliteLog
from facta.testing.bank_model import Account, account_id, replay


@dataclasses.dataclass
class BankReport:
    violations: list[str] = dataclasses.field(default_factory=list)
    ok_transfers: int = 0
    failed_transfers: int = 0
    indeterminate: int = 0
    retried_indeterminate: int = 0
    reads: int = 0
    conflict_retries: int = 0
    chained_appends: int = 0  # transfers appended behind another still in flight
    kills: int = 0
    kills_in_flight: int = 0
    events: int = 0

    @property
    def valid(self) -> bool:
        return not self.violations

    def summary(self) -> dict[str, Any]:
        fields = dataclasses.asdict(self)
        fields["violations"] = len(self.violations)
        fields["first_violations"] = self.violations[:5]
        return fields


@dataclasses.dataclass
class _Op:
    invokes: int = 0
    oks: int = 0
    fails: list[str] = dataclasses.field(default_factory=list)
    infos: int = 0


def _records(paths: list[Path]) -> list[dict[str, Any]]:
    out = []
    for path in paths:
        for line in path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # the tail of a killed client
    return out


def check(log_path: Path, histories: list[Path], accounts: int, total: int) -> BankReport:
    report = BankReport()
    ops: dict[str, _Op] = {}
    for record in _records(histories):
        kind, f = record["type"], record["f"]
        if f == "conflicts":
            report.conflict_retries += int(record["n"])
            continue
        if f == "chained":
            report.chained_appends += int(record["n"])
            continue
        if f == "read":
            if kind == "ok":
                report.reads += 1
                _check_read(report, record, total)
            continue
        op = ops.setdefault(record["op"], _Op())
        if kind == "invoke":
            op.invokes += 1
        elif kind == "ok":
            op.oks += 1
        elif kind == "fail":
            op.fails.append(str(record.get("reason")))
        elif kind == "info":
            op.infos += 1
    applied, final = _replay_log(report, log_path, accounts, total)
    for name, op in sorted(ops.items()):
        count = applied.get(name, 0)
        if op.invokes > 1:
            report.retried_indeterminate += 1
        if op.oks:
            report.ok_transfers += 1
            if op.fails:
                report.violations.append(f"transfer {name} has both ok and fail ({op.fails})")
            if count != 1:
                report.violations.append(
                    f"ok transfer {name} applied {count} times, expected exactly once"
                )
        elif op.fails:
            report.failed_transfers += 1
            if count != 0:
                report.violations.append(
                    f"failed transfer {name} ({op.fails[-1]}) applied {count} times, expected 0"
                )
        else:
            report.indeterminate += 1
            if count > 1:
                report.violations.append(
                    f"indeterminate transfer {name} applied {count} times, expected 0 or 1"
                )
    unknown = set(applied) - set(ops)
    if unknown:
        report.violations.append(f"{len(unknown)} applied transfers were never invoked")
    runtime_final = asyncio.run(_runtime_balances(log_path, accounts))
    if runtime_final != final:
        report.violations.append(
            f"final balances: runtime says {runtime_final}, log replay says {final}"
        )
    return report


def _check_read(report: BankReport, record: dict[str, Any], total: int) -> None:
    value = record["value"]
    where = f"read {record['op']} via {record['via']}"
    if sum(value) != total:
        report.violations.append(f"{where} sums to {sum(value)}, expected {total}: {value}")
    if any(b < 0 for b in value):
        report.violations.append(f"{where} shows a negative balance: {value}")


def _replay_log(
    report: BankReport, log_path: Path, accounts: int, total: int
) -> tuple[Counter[str], list[int]]:
    applied: Counter[str] = Counter()
    balances = [0] * accounts
    with SqliteLog(log_path) as log:
        after = 0
        while True:
            page = log.read_all_sync(after=after, limit=5000)
            if not page:
                break
            for event in page:
                after = event.position
                if not event.stream.startswith("acct-"):
                    continue
                report.events += 1
                amount = int(event.data["amount"])
                replay(balances, event.stream, event.type, amount)
                command = str(event.metadata.get("command_id"))
                if event.type == "Withdrawn":
                    applied[command] += 1
                index = int(event.stream.split("-", 1)[1])
                if balances[index] < 0:
                    report.violations.append(
                        f"account {index} went to {balances[index]} at position {event.position}"
                    )
    if sum(balances) != total:
        report.violations.append(f"the log replays to a total of {sum(balances)}, not {total}")
    return applied, balances


async def _runtime_balances(log_path: Path, accounts: int) -> list[int]:
    with SqliteLog(log_path) as log:
        runtime = Runtime(log)
        states = [await runtime.entity(Account, account_id(i)).state() for i in range(accounts)]
        await runtime.aclose()
    return [int(s) for s in states]

"""One client process of the Jepsen-style bank check.

It makes random transfers and reads through the runtime and writes every operation to its
history file (``invoke`` before, ``ok`` / ``fail`` / ``info`` after). Killed at any moment, it
is restarted with the same history and first re-sends the transfers it never saw complete.

    python -m facta.testing.bank_client LOG HISTORY CLIENT SEED VARIANT ACCOUNTS MODE TIMEOUTS \
        [TASKS]

MODE is ``run`` (until killed) or ``drain`` (re-send pending transfers, then exit); TIMEOUTS is
the fraction of transfers the client gives up on after 2 ms (indeterminate, re-sent later).
TASKS (default 1) operations run at once in the process, on one runtime: a transaction then
often reads an account whose last transaction's append is still in flight and chains its own
append behind it, so kills land in the middle of such chains too.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

from facta.entities import Runtime, TransactionConflict
from facta.log import FactaError, SqliteLog
from facta.testing.bank_model import Overdraft, read_balances, replay, transfer
from facta.testing.bank_variants import make_runtime, open_log

MAX_AMOUNT = 60
QUICK_TIMEOUT = 0.002  # a client that gives up early: its transfer becomes indeterminate


class HistoryFile:
    def __init__(self, path: Path, client: int) -> None:
        self.path = path
        self.client = client
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, record: dict[str, Any]) -> None:
        record = {**record, "client": self.client, "t": time.time()}
        os.write(self._fd, (json.dumps(record) + "\n").encode())  # one write: no torn lines


def pending_transfers(path: Path) -> tuple[list[dict[str, Any]], int]:
    """Transfers invoked but never completed, and how many operations the history holds."""
    invoked: dict[str, dict[str, Any]] = {}
    done: set[str] = set()
    count = 0
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill
            if record["type"] == "invoke":
                if record["op"] not in invoked:
                    count += 1
                if record["f"] == "transfer":
                    invoked[record["op"]] = record
            elif record["type"] in ("ok", "fail"):
                done.add(record["op"])
    return [r for op, r in invoked.items() if op not in done], count


class Client:
    def __init__(
        self,
        log: SqliteLog,
        runtime: Runtime,
        history: HistoryFile,
        accounts: int,
        seed: int,
        timeouts: float,
    ) -> None:
        self.timeouts = timeouts
        self.log = log
        self.runtime = runtime
        self.history = history
        self.accounts = accounts
        self.rng = random.Random(seed)
        self.retry: list[dict[str, Any]] = []
        self.replayed = [0] * accounts
        self.replayed_to = 0
        self._replaying = asyncio.Lock()  # one log read at a time moves ``replayed``
        self._next_op = 0
        self._noted: dict[str, int] = {}

    async def do_transfer(
        self, op: str, source: int, target: int, amount: int, retry: bool
    ) -> None:
        self.history.write(
            {
                "type": "invoke",
                "f": "transfer",
                "op": op,
                "from": source,
                "to": target,
                "amount": amount,
                "retry": retry,
            }
        )
        quick = not retry and self.rng.random() < self.timeouts
        try:
            committed = await asyncio.wait_for(
                self.runtime.transact(transfer(source, target, amount), command_id=op, retries=30),
                QUICK_TIMEOUT if quick else 30.0,
            )
        except Overdraft:
            self.history.write({"type": "fail", "f": "transfer", "op": op, "reason": "overdraft"})
        except TransactionConflict:
            self.history.write({"type": "fail", "f": "transfer", "op": op, "reason": "conflict"})
        except (TimeoutError, FactaError) as error:
            self.history.write(
                {"type": "info", "f": "transfer", "op": op, "reason": type(error).__name__}
            )
            self.retry.append({"op": op, "from": source, "to": target, "amount": amount})
        else:
            self.history.write(
                {
                    "type": "ok",
                    "f": "transfer",
                    "op": op,
                    "replayed": committed.replayed,
                    "position": committed.last_position,
                }
            )
        self._note_counters(op)

    def _note_counters(self, op: str) -> None:
        """Write the runtime's conflicts and chained appends since the last note (with several
        tasks they are the process's, not this transfer's alone; their sum is the total)."""
        stats = self.runtime.stats
        for name, value in (
            ("conflicts", stats.transaction_conflicts),
            ("chained", stats.chained_appends),
        ):
            new = value - self._noted.get(name, 0)
            if new:
                self.history.write({"type": "note", "f": name, "op": op, "n": new})
                self._noted[name] = value

    async def cached_read(self, op: str) -> None:
        self.history.write({"type": "invoke", "f": "read", "op": op, "via": "cache"})
        try:
            committed = await self.runtime.transact(read_balances(self.accounts), retries=30)
        except TransactionConflict:
            self.history.write({"type": "fail", "f": "read", "op": op, "via": "cache"})
            return
        self.history.write(
            {"type": "ok", "f": "read", "op": op, "via": "cache", "value": committed.value}
        )

    async def log_read(self, op: str) -> None:
        """Balances from the log at one position (the head when the read began)."""
        self.history.write({"type": "invoke", "f": "read", "op": op, "via": "log"})
        async with self._replaying:
            await self._replay_log_read(op)

    async def _replay_log_read(self, op: str) -> None:
        head = await self.log.head()
        while self.replayed_to < head:
            page = await self.log.read_all(
                after=self.replayed_to, limit=1000, stream_prefix="acct-"
            )
            for event in page:
                if event.position > head:
                    break
                replay(self.replayed, event.stream, event.type, int(event.data["amount"]))
            self.replayed_to = (
                head if not page or page[-1].position >= head else (page[-1].position)
            )
        self.history.write(
            {
                "type": "ok",
                "f": "read",
                "op": op,
                "via": "log",
                "position": head,
                "value": list(self.replayed),
            }
        )

    async def run(
        self, start: int, pending: list[dict[str, Any]], drain: bool, tasks: int = 1
    ) -> None:
        for record in pending:
            await self.do_transfer(
                record["op"], record["from"], record["to"], record["amount"], True
            )
        if drain:
            return
        self._next_op = start
        await asyncio.gather(*(self._work() for _ in range(tasks)))

    def _new_op(self) -> str:
        """The next operation's id. Ids are numbered in invocation order: each is taken right
        before its invoke record is written (no await between), so after a kill the history
        holds every number up to the last, and the restarted client (which starts from the count
        of operations in its history) never reuses one."""
        self._next_op += 1
        return f"c{self.history.client}-{self._next_op}"

    async def _work(self) -> None:
        while True:
            if self.retry and self.rng.random() < 0.3:
                again = self.retry.pop(0)
                await self.do_transfer(
                    again["op"], again["from"], again["to"], again["amount"], True
                )
            choice = self.rng.random()
            if choice < 0.8:
                source, target = self.rng.sample(range(self.accounts), 2)
                amount = self.rng.randint(1, MAX_AMOUNT)
                await self.do_transfer(self._new_op(), source, target, amount, False)
            elif choice < 0.9:
                await self.cached_read(self._new_op())
            else:
                await self.log_read(self._new_op())


async def main(argv: list[str]) -> None:
    log_path, history_path, client, seed, variant, accounts, mode, timeouts, *rest = argv
    tasks = int(rest[0]) if rest else 1
    history = Path(history_path)
    pending, count = pending_transfers(history)
    log = open_log(log_path, variant)
    runtime = make_runtime(log, variant)
    client_seed = int(seed) * 1000 + int(client) * 100 + count
    worker = Client(
        log,
        runtime,
        HistoryFile(history, int(client)),
        int(accounts),
        client_seed,
        float(timeouts),
    )
    try:
        await worker.run(count, pending, mode == "drain", tasks)
    finally:
        await runtime.aclose()
        log.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))

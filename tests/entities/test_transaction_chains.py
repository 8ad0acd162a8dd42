"""Transactions chained on appends still in flight.

A transaction that reads an entity whose last transaction's append is still in flight decides
on what that append makes of it and queues its own append right behind, depending on it. What a
user relies on: such transactions do not wait for each other's commits (many commit in one
batch), and when the append they were decided on is not written, they are not written either
and run again on the real state, so no update is lost.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from facta.entities import Runtime, Transaction, TransactionConflict
from facta.log import CommitFailed, NewEvent, SqliteLog
from facta.log.request import PreparedAppend
from facta.log.sqlite_write import SqliteWriter
from tests.entities.kinds import (
    Account,
    Balance,
    Deposit,
    InsufficientFunds,
    Withdraw,
)
from tests.log.contract.backends import FaultySqliteLog, _FaultyWriter


class Counter:
    """Each event records the value it sets, so a decision made on a wrong state shows."""

    name = "counter"
    initial = 0

    @staticmethod
    def decide(command: str, value: int) -> list[NewEvent]:
        return [NewEvent(type="Counted", data={"value": value + 1})]

    @staticmethod
    def evolve(value: int, event: NewEvent) -> int:
        return int(event.data["value"])


async def _increment(tx: Transaction) -> None:
    await tx.entity(Counter, "c").send("inc")


async def _queue(log: SqliteLog, count: int, coroutines: list[Any]) -> list[asyncio.Task[Any]]:
    """Start the transactions while the writer is held, until ``count`` appends are queued."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    for _ in range(200):
        if log.queued_appends() >= count:
            break
        await asyncio.sleep(0.001)
    assert log.queued_appends() == count
    return tasks


def test_transactions_on_one_entity_queue_behind_each_other_and_commit_in_one_batch(
    log: SqliteLog,
) -> None:
    async def main() -> None:
        runtime = Runtime(log)
        await runtime.entity(Account, "a").send(Deposit(100))
        await runtime.entity(Account, "b").send(Deposit(0))
        batches = log.stats_sync().process["batches"]

        async def move(tx: Transaction, amount: int) -> None:
            await tx.entity(Account, "a").send(Withdraw(amount))
            await tx.entity(Account, "b").send(Deposit(amount))

        with log.hold_writer():
            tasks = await _queue(
                log,
                10,
                [
                    runtime.transact(lambda tx, n=n: move(tx, n), command_id=f"m-{n}")  # type: ignore[misc]
                    for n in range(1, 11)
                ],
            )
        results = await asyncio.gather(*tasks)
        assert [r.streams for r in results][-1] == {"account-a": 11, "account-b": 11}
        assert log.stats_sync().process["batches"] == batches + 1
        assert runtime.stats.transaction_conflicts == 0
        assert await runtime.entity(Account, "a").state() == Balance(100 - 55)
        assert await runtime.entity(Account, "b").state() == Balance(55)
        await runtime.aclose()

    asyncio.run(main())


class IgnoresAfter(SqliteWriter):
    """Broken: writes an append even when an append it was decided on was not written."""

    def _check_after(self, request: PreparedAppend, currents: list[int]) -> None:
        pass


class IgnoresAfterLog(SqliteLog):
    writer_class = IgnoresAfter


def _lost_update_scenario(log: SqliteLog, path: Path) -> list[int]:
    """Two increments chained in flight while another process sets the counter to 100.

    The first increment expects the version it read, so the other process's append refuses
    it; the second was decided on the first and expects the version after it, which is the
    version the other process's append made: only the dependency stops it.
    """

    async def main() -> None:
        runtime = Runtime(log)
        await runtime.transact(_increment)  # value 1 at version 1, cached
        with log.hold_writer():
            tasks = await _queue(
                log, 2, [runtime.transact(_increment), runtime.transact(_increment)]
            )
            with SqliteLog(path) as other:
                other.append_sync("counter-c", [NewEvent(type="Counted", data={"value": 100})])
        await asyncio.gather(*tasks)
        await runtime.aclose()

    asyncio.run(main())
    return [int(e.data["value"]) for e in log.read_stream_sync("counter-c")]


def test_a_transaction_decided_on_an_append_that_was_refused_runs_again(tmp_path: Path) -> None:
    path = tmp_path / "chain.db"
    with SqliteLog(path) as log:
        values = _lost_update_scenario(log, path)
        # Both increments ran again on the other process's value: none decided on a lost one.
        assert values == [1, 100, 101, 102]
        assert log.stats_sync().process["conflicts"] >= 2


def test_the_broken_writer_that_ignores_dependencies_loses_an_update(tmp_path: Path) -> None:
    path = tmp_path / "broken.db"
    with IgnoresAfterLog(path) as log:
        values = _lost_update_scenario(log, path)
    # The second increment was written on top of the other process's 100, though it was
    # decided on the refused first one (value 2): the check above catches exactly this.
    assert values[:3] == [1, 100, 3], values


# -- property: chains under other processes' appends and failed commits ----------------------

ACCOUNTS = 3
FUNDS = 10  # small: a withdrawal often needs a deposit chained before it


class Ledger:
    """An account whose every event records the balance it was decided on."""

    name = "ledger"
    initial = 0

    @staticmethod
    def decide(command: tuple[str, int], balance: int) -> list[NewEvent]:
        kind, amount = command
        if kind == "withdraw" and amount > balance:
            raise InsufficientFunds(balance, amount)
        signed = -amount if kind == "withdraw" else amount
        return [NewEvent(type="Moved", data={"amount": signed, "before": balance})]

    @staticmethod
    def evolve(balance: int, event: NewEvent) -> int:
        return balance + int(event.data["amount"])


Op = tuple[str, int, int, int]  # ("transfer", from, to, amount) | ("deposit", account, amount, 0)
transfers = st.tuples(
    st.just("transfer"),
    st.integers(0, ACCOUNTS - 1),
    st.integers(0, ACCOUNTS - 1),
    st.integers(1, 20),
).filter(lambda op: op[1] != op[2])
deposits = st.tuples(
    st.just("deposit"), st.integers(0, ACCOUNTS - 1), st.integers(1, 5), st.just(0)
)
failures = st.tuples(st.just("fail"), st.just(0), st.just(0), st.just(0))
any_op = st.one_of(transfers, deposits, transfers, deposits, failures)
rounds_of_ops = st.lists(
    st.lists(any_op, min_size=1, max_size=10),
    min_size=1,
    max_size=4,
)


class _FaultyIgnoringAfter(_FaultyWriter):
    def _check_after(self, request: PreparedAppend, currents: list[int]) -> None:
        pass


class FaultyLogIgnoringAfter(FaultySqliteLog):
    """Broken: the faulty log whose writer ignores what an append was decided on."""

    writer_class = _FaultyIgnoringAfter


async def _queued_or_done(log: SqliteLog, task: asyncio.Task[Any]) -> None:
    """Let a transaction run until its append is queued (the writer is held) or it ended."""
    queued = log.queued_appends()
    for _ in range(1000):
        if task.done() or log.queued_appends() > queued:
            return
        await asyncio.sleep(0)
    raise AssertionError("a transaction neither queued its append nor ended")


def _bank_rounds(path: Path, log_class: type[FaultySqliteLog], rounds: list[list[Op]]) -> None:
    """Each round queues its transfers together (so they chain) while another process deposits
    and the round's commit may fail. Then, whatever happened: every event in the log was decided
    on the balance the log had before it (no decision on a state that was never written), no
    balance went negative, the total is what the deposits made it, each acknowledged transfer
    is in the log once and each failed one not at all, and the runtime's cache agrees."""
    log = log_class(path)
    outcomes: dict[str, bool] = {}
    deposited = 0

    async def transfer(tx: Transaction, source: int, target: int, amount: int) -> None:
        await tx.entity(Ledger, str(source)).send(("withdraw", amount))
        await tx.entity(Ledger, str(target)).send(("deposit", amount))

    async def main() -> list[int]:
        nonlocal deposited
        runtime = Runtime(log)
        for a in range(ACCOUNTS):
            await runtime.entity(Ledger, str(a)).send(("deposit", FUNDS))
        with SqliteLog(path) as other:
            for r, round_ops in enumerate(rounds):
                tasks: dict[str, asyncio.Task[Any]] = {}
                with log.hold_writer():
                    for i, (kind, x, y, amount) in enumerate(round_ops):
                        if kind == "transfer":
                            op = f"t-{r}-{i}"
                            tasks[op] = asyncio.ensure_future(
                                runtime.transact(
                                    lambda tx, x=x, y=y, n=amount: transfer(tx, x, y, n),  # type: ignore[misc]
                                    command_id=op,
                                    retries=50,
                                )
                            )
                            await _queued_or_done(log, tasks[op])
                        elif kind == "deposit":
                            moved = NewEvent(type="Moved", data={"amount": y, "by": "other"})
                            other.append_sync(f"ledger-{x}", [moved])
                            deposited += y
                        else:
                            log.fail_next_commit()
                for op, task in tasks.items():
                    try:
                        await task
                        outcomes[op] = True
                    except (InsufficientFunds, TransactionConflict, CommitFailed):
                        outcomes[op] = False
        cached = [await runtime.entity(Ledger, str(a)).state() for a in range(ACCOUNTS)]
        await runtime.aclose()
        return cached

    with log:
        cached = asyncio.run(main())
        events = log.read_all_sync()
    balances = [0] * ACCOUNTS
    written: dict[str, int] = {}
    for event in events:
        account = int(event.stream.split("-")[1])
        if "before" in event.data:
            assert event.data["before"] == balances[account], (
                f"account {account}: event {event.position} was decided on balance "
                f"{event.data['before']}, the log had {balances[account]}"
            )
        balances[account] += int(event.data["amount"])
        assert balances[account] >= 0, f"account {account} went negative at {event.position}"
        command = event.metadata.get("command_id", "")
        if command.startswith("t-"):
            written[command] = written.get(command, 0) + 1
    assert sum(balances) == ACCOUNTS * FUNDS + deposited
    assert cached == balances
    for op, ok in outcomes.items():
        assert written.get(op, 0) == (2 if ok else 0), (op, ok, written.get(op))


def _bank_property(log_class: type[FaultySqliteLog], examples: int, *, shrink: bool) -> Any:
    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate, *([Phase.shrink] if shrink else [])],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(rounds=rounds_of_ops)
    def check(tmp_path_factory: pytest.TempPathFactory, rounds: list[list[Op]]) -> None:
        _bank_rounds(tmp_path_factory.mktemp("chains") / "bank.db", log_class, rounds)

    return check


def test_chained_transactions_keep_the_bank_consistent(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    _bank_property(FaultySqliteLog, 150, shrink=True)(tmp_path_factory)


def test_the_bank_property_catches_a_writer_that_ignores_dependencies(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    with pytest.raises(AssertionError, match="was decided on balance"):
        # Not shrunk: finding one example is the point, and shrinking costs more than it.
        _bank_property(FaultyLogIgnoringAfter, 300, shrink=False)(tmp_path_factory)


def test_a_command_waits_for_the_chain_in_flight_instead_of_conflicting(log: SqliteLog) -> None:
    async def main() -> None:
        runtime = Runtime(log)
        await runtime.transact(_increment)
        with log.hold_writer():
            chained = await _queue(log, 3, [runtime.transact(_increment) for _ in range(3)])
            command = asyncio.ensure_future(runtime.entity(Counter, "c").send("inc"))
            for _ in range(20):
                await asyncio.sleep(0)
            assert log.queued_appends() == 3  # the command waits for the chain to settle
            late = asyncio.ensure_future(runtime.transact(_increment))
            for _ in range(20):
                await asyncio.sleep(0)
            assert log.queued_appends() == 3  # and a new transaction does not chain past it
        await asyncio.gather(*chained, command, late)
        values = [int(e.data["value"]) for e in log.read_stream_sync("counter-c")]
        assert values == [1, 2, 3, 4, 5, 6]
        assert runtime.stats.conflict_retries == 0
        assert runtime.stats.transaction_conflicts == 0
        await runtime.aclose()

    asyncio.run(main())

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from facta.entities import AlreadyApplied, Runtime, Transaction, TransactionConflict
from facta.log import SqliteLog
from tests.entities.kinds import Account, Balance, Deposit, InsufficientFunds, Withdraw


async def _transfer(tx: Transaction, source: str, target: str, amount: int) -> None:
    await tx.entity(Account, source).send(Withdraw(amount))
    await tx.entity(Account, target).send(Deposit(amount))


async def _funded(log: SqliteLog, **balances: int) -> Runtime:
    runtime = Runtime(log)
    for name, amount in balances.items():
        await runtime.entity(Account, name).send(Deposit(amount))
    return runtime


def test_transfer_commits_both_legs_in_one_append(log: SqliteLog) -> None:
    async def main() -> None:
        runtime = await _funded(log, a=10)
        committed = await runtime.transact(lambda tx: _transfer(tx, "a", "b", 4), command_id="t")
        assert committed.streams == {"account-a": 2, "account-b": 1}
        assert (committed.first_position, committed.last_position) == (2, 3)
        assert await runtime.entity(Account, "a").state() == Balance(6)
        assert await runtime.entity(Account, "b").state() == Balance(4)
        again = await runtime.transact(lambda tx: _transfer(tx, "a", "b", 4), command_id="t")
        assert again.replayed and log.head_sync() == 3

    asyncio.run(main())


def test_domain_error_timeout_and_cancellation_write_nothing(log: SqliteLog) -> None:
    async def main() -> None:
        runtime = await _funded(log, a=10)

        async def overdraw(tx: Transaction) -> None:
            await tx.entity(Account, "b").send(Deposit(50))  # staged, then abandoned
            await tx.entity(Account, "a").send(Withdraw(50))

        with pytest.raises(InsufficientFunds):
            await runtime.transact(overdraw, command_id="t1")

        started = asyncio.Event()

        async def slow(tx: Transaction) -> None:
            await tx.entity(Account, "b").send(Deposit(1))
            started.set()
            await asyncio.sleep(10)

        with pytest.raises(TimeoutError):
            await runtime.transact(slow, command_id="t2", timeout=0.05)
        started.clear()
        task = asyncio.create_task(runtime.transact(slow, command_id="t3"))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert log.head_sync() == 1
        assert all(log.lookup_sync(k) is None for k in ("t1", "t2", "t3"))
        assert await runtime.entity(Account, "b").state() == Balance(0)
        assert runtime.stats.transaction_aborts == 3

    asyncio.run(main())


def test_reads_see_own_staged_events_and_the_cache_only_after_commit(log: SqliteLog) -> None:
    async def main() -> None:
        runtime = await _funded(log, a=10)
        async with runtime.transaction(command_id="t") as tx:
            await tx.entity(Account, "a").send(Withdraw(3))
            assert await tx.entity(Account, "a").state() == Balance(7)
            await tx.entity(Account, "a").send(Withdraw(7))  # possible only on staged state
            cached = runtime.cache.peek("account-a")
            assert cached is not None and (cached.version, cached.state) == (1, Balance(10))
        assert tx.result is not None and tx.result.streams == {"account-a": 3}
        cached = runtime.cache.peek("account-a")
        assert cached is not None and (cached.version, cached.state) == (3, Balance(0))
        with pytest.raises(AlreadyApplied):
            async with runtime.transaction(command_id="t"):
                raise AssertionError("the body of an applied transaction must not run")

    asyncio.run(main())


def test_write_skew_is_refused_by_read_checks(log: SqliteLog) -> None:
    """Two transactions each check a + b >= 10 and withdraw from a different account."""

    async def main() -> None:
        runtime = await _funded(log, a=10, b=10)
        first = runtime.transaction()
        second = runtime.transaction()
        tx1 = await first.__aenter__()
        tx2 = await second.__aenter__()
        for tx, target in ((tx1, "a"), (tx2, "b")):
            a = await tx.entity(Account, "a").state()
            b = await tx.entity(Account, "b").state()
            assert a.amount + b.amount - 10 >= 10
            await tx.entity(Account, target).send(Withdraw(10))
        await first.__aexit__(None, None, None)
        # The second only *read* account-a; its read check is what refuses the skew.
        with pytest.raises(TransactionConflict, match="stream 'account-a' changed"):
            await second.__aexit__(None, None, None)
        total = sum([(await runtime.entity(Account, n).state()).amount for n in "ab"])
        assert total == 10

    asyncio.run(main())


def test_read_only_participant_conflict_reruns_the_function(log_path: Path) -> None:
    async def main() -> None:
        with SqliteLog(log_path) as log, SqliteLog(log_path) as other_log:
            runtime = await _funded(log, a=10, b=0)
            other = Runtime(other_log)
            attempts = 0

            async def move_if_b_empty(tx: Transaction) -> int:
                nonlocal attempts
                attempts += 1
                b: Balance = await tx.entity(Account, "b").state()  # only read
                if attempts == 1:  # another process changes b after our read
                    await other.entity(Account, "b").send(Deposit(1))
                if b.amount == 0:
                    await tx.entity(Account, "a").send(Withdraw(5))
                return b.amount

            committed = await runtime.transact(move_if_b_empty, command_id="t")
            assert attempts == 2 and committed.value == 1
            assert await runtime.entity(Account, "a").state() == Balance(10)
            assert runtime.stats.transaction_conflicts == 1

            async def always_raced(tx: Transaction) -> None:
                await tx.entity(Account, "b").state()
                await other.entity(Account, "b").send(Deposit(1))
                await tx.entity(Account, "a").send(Deposit(1))

            with pytest.raises(TransactionConflict, match="gave up after 3 attempt") as caught:
                await runtime.transact(always_raced, retries=3)
            assert caught.value.stream == "account-b"

    asyncio.run(main())


def test_concurrent_transfers_conserve_the_total(log: SqliteLog) -> None:
    async def main() -> None:
        runtime = await _funded(log, a=100, b=100, c=100)
        pairs = [("a", "b"), ("b", "c"), ("c", "a"), ("b", "a")] * 25

        async def one(i: int, source: str, target: str) -> None:
            with contextlib.suppress(InsufficientFunds):
                await runtime.transact(
                    lambda tx: _transfer(tx, source, target, 7), command_id=f"t{i}", retries=50
                )

        await asyncio.gather(*(one(i, s, t) for i, (s, t) in enumerate(pairs)))
        states = [await runtime.entity(Account, n).state() for n in "abc"]
        assert sum(s.amount for s in states) == 300
        assert runtime.stats.transactions >= 50

    asyncio.run(main())


def test_a_transaction_holds_no_entity_while_it_awaits(log: SqliteLog) -> None:
    async def main() -> None:
        runtime = await _funded(log, a=10)
        inside = asyncio.Event()
        proceed = asyncio.Event()
        attempts = 0

        async def slow_withdraw(tx: Transaction) -> None:
            nonlocal attempts
            attempts += 1
            await tx.entity(Account, "a").send(Withdraw(5))
            inside.set()
            await proceed.wait()  # a long await in the middle of the transaction

        task = asyncio.create_task(runtime.transact(slow_withdraw, command_id="slow"))
        await inside.wait()
        # The entity still takes commands while the transaction waits: nothing is locked.
        await asyncio.wait_for(runtime.entity(Account, "a").send(Deposit(1)), 1.0)
        proceed.set()
        committed = await task
        assert attempts == 2 and committed.streams == {"account-a": 3}
        assert await runtime.entity(Account, "a").state() == Balance(6)

    asyncio.run(main())


def test_a_read_made_stale_in_this_process_fails_before_appending(log: SqliteLog) -> None:
    """The cache knows a participant moved: no append is spent on a conflict the log would find."""

    async def main() -> None:
        runtime = await _funded(log, a=10, b=10)
        first = runtime.transaction()
        second = runtime.transaction()
        tx1 = await first.__aenter__()
        tx2 = await second.__aenter__()
        await tx1.entity(Account, "a").send(Withdraw(4))
        await tx2.entity(Account, "a").send(Withdraw(4))
        await first.__aexit__(None, None, None)
        appends = log.metrics.appends
        with pytest.raises(TransactionConflict, match=r"'account-a'.*expected version 1"):
            await second.__aexit__(None, None, None)
        assert log.metrics.appends == appends and log.metrics.conflicts == 0
        assert runtime.stats.stale_reads == 1

        # transact() runs the function again at once, on the moved state, and commits.
        attempts = 0

        async def racing(tx: Transaction) -> None:
            nonlocal attempts
            attempts += 1
            await tx.entity(Account, "b").send(Withdraw(3))
            if attempts == 1:  # another task of this process commits b meanwhile
                await runtime.transact(lambda other: _transfer(other, "b", "a", 1))

        committed = await runtime.transact(racing, command_id="racing")
        assert attempts == 2 and committed.streams == {"account-b": 3}
        assert await runtime.entity(Account, "b").state() == Balance(6)
        assert runtime.stats.stale_reads == 2 and log.metrics.conflicts == 0

    asyncio.run(main())


def test_a_read_waits_for_an_in_flight_commit_of_its_entity(log: SqliteLog) -> None:
    async def main() -> None:
        runtime = await _funded(log, a=10)
        with log.hold_writer():  # the first transfer's append waits in the queue
            first = asyncio.create_task(runtime.transact(lambda tx: _transfer(tx, "a", "b", 4)))
            for _ in range(1000):
                if log.queued_appends():
                    break
                await asyncio.sleep(0.001)
            second = asyncio.create_task(runtime.transact(lambda tx: _transfer(tx, "a", "c", 6)))
            await asyncio.sleep(0.05)
            assert not second.done()  # reading a: waits for the first commit to settle
        await asyncio.gather(first, second)
        assert runtime.stats.transaction_conflicts == 0  # it read after, so nothing to redo
        states = [await runtime.entity(Account, n).state() for n in "abc"]
        assert states == [Balance(0), Balance(4), Balance(6)]

    asyncio.run(main())

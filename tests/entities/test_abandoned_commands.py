"""A command sent again while an earlier attempt's append is still in flight.

A caller that gives up on a transaction (a timeout, a cancellation) does not stop its append:
it may still be written. Sending the same command id again must then return that attempt's
outcome, never decide anew: deciding on the state the first attempt leaves would refuse the
command (a domain error, which a transaction does not record) although it was applied.
"""

from __future__ import annotations

import asyncio

import pytest

from facta.entities import Committed, Runtime, Transaction
from facta.log import InvalidInput, NewEvent, SqliteLog
from tests.entities.kinds import Account, Deposit, InsufficientFunds, Withdraw


async def _withdraw_80(tx: Transaction) -> None:
    await tx.entity(Account, "a").send(Withdraw(80))


async def _wait_queued(log: SqliteLog, count: int) -> None:
    for _ in range(200):
        if log.queued_appends() == count:
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"expected {count} queued appends, found {log.queued_appends()}")


class ForgetfulRuntime(Runtime):
    """Broken on purpose: does not wait for an abandoned attempt before deciding again, and
    trusts the refusal it then decides (the look-up after a refusal, which would also catch
    this case, is tested on its own in test_refusal_after_applied)."""

    async def _after_abandoned(self, command_id: str) -> None:
        return None

    async def _applied_meanwhile(self, command_id: str | None) -> Committed | None:
        return None


async def _give_up_then_retry(log: SqliteLog, runtime: Runtime) -> Committed:
    await runtime.entity(Account, "a").send(Deposit(100))
    with log.hold_writer():
        first = asyncio.ensure_future(runtime.transact(_withdraw_80, command_id="w-1"))
        await _wait_queued(log, 1)
        first.cancel()  # the caller gives up; its append stays queued
        with pytest.raises(asyncio.CancelledError):
            await first
        # A command decides on the account as this process last knew it (100) and queues an
        # append that the first attempt's will make fail; it then reloads the account and
        # runs again. The retry below reads the account only once that command is done.
        deposit = asyncio.ensure_future(runtime.entity(Account, "a").send(Deposit(1)))
        await _wait_queued(log, 2)
        retry = asyncio.ensure_future(runtime.transact(_withdraw_80, command_id="w-1"))
        for _ in range(20):
            await asyncio.sleep(0)
    # The writer runs again: the first attempt's append is written; the deposit runs again on
    # the state it left (20), and the retry reads 21, unless it waits for the first attempt
    # and finds its outcome first.
    await deposit
    return await retry


def test_a_retry_returns_the_outcome_of_the_attempt_given_up_on(log: SqliteLog) -> None:
    async def main() -> None:
        runtime = Runtime(log)
        committed = await _give_up_then_retry(log, runtime)
        assert committed.replayed
        withdrawals = [e for e in log.read_stream_sync("account-a") if e.type == "Withdrawn"]
        assert len(withdrawals) == 1
        assert committed.last_position == withdrawals[0].position
        assert runtime.abandoned_appends == {}
        # It waited for the first attempt and found its outcome: it never decided (a retry
        # that decided would have refused, then found the outcome by looking again).
        assert runtime.stats.transaction_aborts == 0
        await runtime.aclose()

    asyncio.run(main())


def test_the_broken_runtime_refuses_a_command_it_applied(log: SqliteLog) -> None:
    async def main() -> None:
        runtime = ForgetfulRuntime(log)
        with pytest.raises(InsufficientFunds):
            await _give_up_then_retry(log, runtime)
        withdrawals = [e for e in log.read_stream_sync("account-a") if e.type == "Withdrawn"]
        assert len(withdrawals) == 1  # applied once, yet the retry reported a refusal
        await runtime.aclose()

    asyncio.run(main())


def test_an_attempt_refused_before_it_was_queued_is_not_waited_for(log: SqliteLog) -> None:
    """An append the log refused while preparing it (bad input) never was in flight: sending
    the command again runs it, not ``CommandInFlight``."""

    async def bad(tx: Transaction) -> None:
        tx.emit("notes", [NewEvent(type="Noted", data={"x": float("nan")})])

    async def good(tx: Transaction) -> None:
        tx.emit("notes", [NewEvent(type="Noted", data={"x": 1.0})])

    async def main() -> None:
        runtime = Runtime(log)
        with pytest.raises(InvalidInput):
            await runtime.transact(bad, command_id="n-1")
        committed = await runtime.transact(good, command_id="n-1")
        assert not committed.replayed
        assert runtime.abandoned_appends == {}
        await runtime.aclose()

    asyncio.run(main())

"""Two processes run the same command id at the same moment: one applies it, and the other,
deciding on the state the first left, would refuse it. A transaction's refusal is not recorded,
so nothing makes the two conflict: the refusing one must look again and answer with the
recorded outcome, or the same command id would be both applied and refused.

Two runtimes, each with its own connection to one log file, stand for the two processes; the
second one's transaction function waits until the first has committed, then reads.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from facta.entities import AlreadyApplied, Committed, Runtime, Transaction
from facta.log import SqliteLog
from tests.entities.kinds import Account, Deposit, InsufficientFunds, Withdraw


class TrustsItsRefusal(Runtime):
    """Broken on purpose: a refusal stands, whatever was recorded since the lookup."""

    async def _applied_meanwhile(self, command_id: str | None) -> Committed | None:
        return None


async def _race(path: Path, second_class: type[Runtime]) -> tuple[Committed, Committed]:
    with SqliteLog(path) as log_a, SqliteLog(path) as log_b:
        first, second = Runtime(log_a), second_class(log_b)
        await first.entity(Account, "a").send(Deposit(100))
        looked_up, applied = asyncio.Event(), asyncio.Event()

        async def withdraw_80(tx: Transaction) -> None:
            await tx.entity(Account, "a").send(Withdraw(80))

        async def withdraw_80_later(tx: Transaction) -> None:
            # "w-1" was looked up before this runs (not recorded yet). The account is read
            # after the other runtime applied "w-1": 20 left, so Withdraw(80) is refused.
            looked_up.set()
            await asyncio.wait_for(applied.wait(), timeout=10)
            await tx.entity(Account, "a").send(Withdraw(80))

        async def run_first() -> Committed:
            await asyncio.wait_for(looked_up.wait(), timeout=10)
            done = await first.transact(withdraw_80, command_id="w-1")
            applied.set()
            return done

        async def run_second() -> Committed:
            return await second.transact(withdraw_80_later, command_id="w-1")

        try:
            return tuple(await asyncio.gather(run_first(), run_second()))  # type: ignore[return-value]
        finally:
            await first.aclose()
            await second.aclose()


def test_the_second_attempt_answers_with_the_outcome_recorded_meanwhile(tmp_path: Path) -> None:
    done_first, done_second = asyncio.run(_race(tmp_path / "log.db", Runtime))
    assert not done_first.replayed
    assert done_second.replayed
    assert done_second.last_position == done_first.last_position
    with SqliteLog(tmp_path / "log.db") as log:
        withdrawn = [e for e in log.read_stream_sync("account-a") if e.type == "Withdrawn"]
    assert len(withdrawn) == 1


def test_the_check_catches_a_runtime_that_trusts_its_refusal(tmp_path: Path) -> None:
    with pytest.raises(InsufficientFunds):
        asyncio.run(_race(tmp_path / "log.db", TrustsItsRefusal))


def test_a_transaction_block_raises_already_applied_instead_of_the_refusal(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        path = tmp_path / "log.db"
        with SqliteLog(path) as log_a, SqliteLog(path) as log_b:
            first, second = Runtime(log_a), Runtime(log_b)
            await first.entity(Account, "a").send(Deposit(100))
            with pytest.raises(AlreadyApplied) as caught:
                async with second.transaction(command_id="w-1") as tx:
                    # "w-1" was looked up (not recorded); the other runtime applies it now.
                    await first.transact(
                        lambda t: t.entity(Account, "a").send(Withdraw(80)), command_id="w-1"
                    )
                    await tx.entity(Account, "a").send(Withdraw(80))
            assert isinstance(caught.value.__cause__, InsufficientFunds)
            await first.aclose()
            await second.aclose()

    asyncio.run(main())

"""A small bank on facta: accounts, transfers as transactions, refused overdrafts, and a
processor that records a notification for every large transfer.

Run it:  python examples/bank/bank.py [LOG_PATH]
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec

from facta.entities import DomainError, Runtime, Transaction
from facta.entities.processor import Effect, Emit, Processor
from facta.entities.processor_runner import ProcessorRunner
from facta.entities.trace import render, trace
from facta.log import EventTypes, NewEvent, RecordedEvent, SqliteLog

LARGE = 1_000
types = EventTypes()


# -- events (facts, past tense) ---------------------------------------------------------------


@types.register("AccountOpened")
class AccountOpened(msgspec.Struct, frozen=True):
    owner: str


@types.register("MoneyDeposited")
class MoneyDeposited(msgspec.Struct, frozen=True):
    amount: int
    transfer: str | None = None


@types.register("MoneyWithdrawn")
class MoneyWithdrawn(msgspec.Struct, frozen=True):
    amount: int
    transfer: str | None = None


# -- commands (requests, imperative) -------------------------------------------------------------


@dataclass(frozen=True)
class Open:
    owner: str


@dataclass(frozen=True)
class Deposit:
    amount: int
    transfer: str | None = None


@dataclass(frozen=True)
class Withdraw:
    amount: int
    transfer: str | None = None


@dataclass(frozen=True)
class AccountState:
    owner: str | None = None
    balance: int = 0


class NotOpen(DomainError):
    pass


class Overdraft(DomainError):
    """Refuses a withdrawal larger than the balance: args are (balance, amount)."""


class Account:
    """The decider: pure functions of commands, events and state."""

    name = "account"
    events = types
    initial = AccountState()

    @staticmethod
    def decide(
        command: Open | Deposit | Withdraw, state: AccountState
    ) -> list[AccountOpened | MoneyDeposited | MoneyWithdrawn]:
        match command:
            case Open(owner):
                return [] if state.owner else [AccountOpened(owner)]
            case _ if state.owner is None:
                raise NotOpen(f"account is not open: {command!r}")
            case Deposit(amount, transfer):
                return [MoneyDeposited(amount, transfer)]
            case Withdraw(amount, _) if amount > state.balance:
                raise Overdraft(state.balance, amount)
            case Withdraw(amount, transfer):
                return [MoneyWithdrawn(amount, transfer)]
        raise TypeError(f"unknown command {command!r}")

    @staticmethod
    def evolve(
        state: AccountState, event: AccountOpened | MoneyDeposited | MoneyWithdrawn
    ) -> AccountState:
        match event:
            case AccountOpened(owner):
                return AccountState(owner, state.balance)
            case MoneyDeposited(amount):
                return AccountState(state.owner, state.balance + amount)
            case MoneyWithdrawn(amount):
                return AccountState(state.owner, state.balance - amount)
        return state


def transfer(
    source: str, target: str, amount: int, transfer_id: str
) -> Callable[[Transaction], Awaitable[None]]:
    """A transfer is a transaction across two accounts: both legs commit, or neither."""

    async def run(tx: Transaction) -> None:
        await tx.entity(Account, source).send(Withdraw(amount, transfer_id))
        await tx.entity(Account, target).send(Deposit(amount, transfer_id))

    return run


def notify_large(count: int, event: RecordedEvent) -> tuple[int, Sequence[Effect]]:
    """Processor: a notification for each large transfer (seen on its withdrawal leg)."""
    if event.type != "MoneyWithdrawn" or event.data.get("transfer") is None:
        return count, []
    if event.data["amount"] < LARGE:
        return count, []
    note = NewEvent(
        type="LargeTransferNoticed",
        data={"transfer": event.data["transfer"], "amount": event.data["amount"]},
    )
    return count + 1, [Emit("notifications", note)]


NOTIFICATIONS = Processor(
    "large-transfers", notify_large, initial=0, types=("MoneyWithdrawn",), state_type=int
)


async def main(path: Path) -> None:
    with SqliteLog(path) as log:
        bank = Runtime(log)
        for name, owner in (("alice", "Alice"), ("bob", "Bob")):
            await bank.entity(Account, name).send(Open(owner), command_id=f"open-{name}")
        await bank.entity(Account, "alice").send(Deposit(5_000), command_id="salary-1")

        await bank.transact(transfer("alice", "bob", 1_500, "t-1"), command_id="t-1")
        await bank.transact(transfer("bob", "alice", 200, "t-2"), command_id="t-2")
        # Sending t-1 again (a retry after a timeout, say) changes nothing.
        again = await bank.transact(transfer("alice", "bob", 1_500, "t-1"), command_id="t-1")
        print(f"t-1 sent again: replayed={again.replayed}")
        try:
            await bank.transact(transfer("bob", "alice", 10_000, "t-3"), command_id="t-3")
        except Overdraft as refused:
            balance, amount = refused.args
            print(f"t-3 refused: overdraft (balance {balance}, amount {amount})")

        await ProcessorRunner(bank, NOTIFICATIONS, batch_ms=1).run_to_head()

        for name in ("alice", "bob"):
            state = await bank.entity(Account, name).state()
            print(f"{name}: {state.balance}")
        notes = log.read_stream_sync("notifications")
        print(f"notifications: {[n.data['transfer'] for n in notes]}")
        print(render(trace(log, "t-1")))
        await bank.aclose()


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp()) / "bank.db"
    asyncio.run(main(target))

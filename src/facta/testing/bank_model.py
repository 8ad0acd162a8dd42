"""The bank the Jepsen-style check runs: accounts, transfers and balance reads.

Kept minimal and plain (untyped events) so that the checker can replay the log by itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from facta.entities import DomainError, Transaction
from facta.log import NewEvent


@dataclass(frozen=True)
class Deposit:
    amount: int


@dataclass(frozen=True)
class Withdraw:
    amount: int


class Overdraft(DomainError):
    """args: (balance, amount)."""


class Account:
    name = "acct"
    initial = 0

    @staticmethod
    def decide(command: Deposit | Withdraw, balance: int) -> list[NewEvent]:
        match command:
            case Deposit(amount):
                return [NewEvent(type="Deposited", data={"amount": amount})]
            case Withdraw(amount) if amount > balance:
                raise Overdraft(balance, amount)
            case Withdraw(amount):
                return [NewEvent(type="Withdrawn", data={"amount": amount})]
        raise TypeError(f"unknown command {command!r}")

    @staticmethod
    def evolve(balance: int, event: NewEvent) -> int:
        amount = int(event.data["amount"])
        return balance + amount if event.type == "Deposited" else balance - amount


def account_id(index: int) -> str:
    return str(index)


def transfer(source: int, target: int, amount: int) -> Callable[[Transaction], Awaitable[None]]:
    async def run(tx: Transaction) -> None:
        await tx.entity(Account, account_id(source)).send(Withdraw(amount))
        await tx.entity(Account, account_id(target)).send(Deposit(amount))

    return run


def read_balances(accounts: int) -> Callable[[Transaction], Awaitable[list[int]]]:
    async def run(tx: Transaction) -> list[int]:
        return [int(await tx.entity(Account, account_id(i)).state()) for i in range(accounts)]

    return run


def replay(balances: list[int], event_stream: str, event_type: str, amount: int) -> None:
    """Apply one account event to a list of balances (the checker's own, independent fold)."""
    index = int(event_stream.split("-", 1)[1])
    balances[index] += amount if event_type == "Deposited" else -amount

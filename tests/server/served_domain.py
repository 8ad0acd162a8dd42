"""The text of a module a project gives ``facta serve --module``: a bank account and a processor.

Tests write it into the server's working directory (which ``facta serve`` makes importable).
"""

from __future__ import annotations

from pathlib import Path

DOMAIN = """
from dataclasses import dataclass

from facta.entities import DomainError, Emit, Processor
from facta.log import NewEvent
from facta.server import ServedKind


@dataclass(frozen=True)
class Deposit:
    amount: int


@dataclass(frozen=True)
class Withdraw:
    amount: int


class InsufficientFunds(DomainError):
    pass


class Account:
    name = "account"
    initial = 0

    @staticmethod
    def decide(command, balance):
        if isinstance(command, Deposit):
            return [NewEvent(type="Deposited", data={"amount": command.amount})]
        if command.amount > balance:
            raise InsufficientFunds(balance, command.amount)
        return [NewEvent(type="Withdrawn", data={"amount": command.amount})]

    @staticmethod
    def evolve(balance, event):
        sign = 1 if event.type == "Deposited" else -1
        return balance + sign * int(event.data["amount"])


def audit(count, event):
    note = NewEvent(type="WithdrawalAudited", data={"stream": event.stream})
    return count + 1, [Emit("audit-log", note)]


KINDS = [ServedKind(Account, {"Deposit": Deposit, "Withdraw": Withdraw})]
PROCESSORS = [Processor("audit", audit, initial=0, types=("Withdrawn",))]
"""


def write_domain(directory: Path, name: str = "bank_domain") -> str:
    (directory / f"{name}.py").write_text(DOMAIN)
    return name

"""Small deciders the entity tests share: a typed bank account and a plain counter."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from facta.entities import DomainError
from facta.log import EventTypes, NewEvent

types = EventTypes()


@types.register("Deposited")
class Deposited(msgspec.Struct, frozen=True):
    amount: int


@types.register("Withdrawn")
class Withdrawn(msgspec.Struct, frozen=True):
    amount: int


@dataclass(frozen=True)
class Deposit:
    amount: int


@dataclass(frozen=True)
class Withdraw:
    amount: int


@dataclass(frozen=True)
class Balance:
    amount: int = 0


class InsufficientFunds(DomainError):
    pass


class Account:
    name = "account"
    events = types
    initial = Balance(0)

    @staticmethod
    def decide(command: Deposit | Withdraw, state: Balance) -> list[Deposited | Withdrawn]:
        match command:
            case Deposit(amount):
                return [Deposited(amount)]
            case Withdraw(amount) if amount > state.amount:
                raise InsufficientFunds(state.amount, amount)
            case Withdraw(amount):
                return [Withdrawn(amount)]
        raise TypeError(f"unknown command {command!r}")

    @staticmethod
    def evolve(state: Balance, event: Deposited | Withdrawn) -> Balance:
        match event:
            case Deposited(amount):
                return Balance(state.amount + amount)
            case Withdrawn(amount):
                return Balance(state.amount - amount)
        return state


@dataclass(frozen=True)
class Add:
    n: int


def counter_decide(command: Add, state: int) -> list[NewEvent]:
    return [NewEvent(type="Added", data={"n": command.n})]


def counter_evolve(state: int, event: NewEvent) -> int:
    return state + int(event.data["n"])


class Counter:
    """A plain (untyped) decider written as module functions."""

    name = "counter"
    initial = 0
    decide = staticmethod(counter_decide)
    evolve = staticmethod(counter_evolve)

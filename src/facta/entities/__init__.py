"""The write side: deciders, entities, transactions across entities, processors, causality."""

from facta.entities.decider import KindSpec, decide_and_evolve, spec_of
from facta.entities.errors import (
    AlreadyApplied,
    ConcurrencyConflict,
    DomainError,
    Overloaded,
    ReentrantSend,
    TransactionConflict,
)
from facta.entities.outcome import Accepted, CommandRefused, Committed

__all__ = [
    "Accepted",
    "AlreadyApplied",
    "CommandRefused",
    "Committed",
    "ConcurrencyConflict",
    "DomainError",
    "KindSpec",
    "Overloaded",
    "ReentrantSend",
    "TransactionConflict",
    "decide_and_evolve",
    "spec_of",
]

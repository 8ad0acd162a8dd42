"""The write side: deciders, entities, transactions across entities, processors, causality."""

from facta.entities.cache import RuntimeConfig
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
from facta.entities.runtime import EntityRef, Runtime, RuntimeStats
from facta.entities.sync import SyncRuntime
from facta.entities.transaction import Transaction, TxEntity

__all__ = [
    "Accepted",
    "AlreadyApplied",
    "CommandRefused",
    "Committed",
    "ConcurrencyConflict",
    "DomainError",
    "EntityRef",
    "KindSpec",
    "Overloaded",
    "ReentrantSend",
    "Runtime",
    "RuntimeConfig",
    "RuntimeStats",
    "SyncRuntime",
    "Transaction",
    "TransactionConflict",
    "TxEntity",
    "decide_and_evolve",
    "spec_of",
]

"""The write side: deciders, entities, transactions across entities, processors, causality."""

from facta.entities.cache import RuntimeConfig
from facta.entities.decider import KindSpec, decide_and_evolve, spec_of
from facta.entities.errors import (
    AlreadyApplied,
    CommandInFlight,
    ConcurrencyConflict,
    DomainError,
    Overloaded,
    ReentrantSend,
    TransactionConflict,
)
from facta.entities.outcome import Accepted, CommandRefused, Committed
from facta.entities.processor import Effect, Emit, Processor, Send
from facta.entities.processor_runner import ProcessorRunner
from facta.entities.runtime import EntityRef, Runtime, RuntimeStats
from facta.entities.sync import SyncRuntime
from facta.entities.trace import TraceNode, render, trace
from facta.entities.tracking import ProcessorStatus, processor_statuses, skip
from facta.entities.transaction import Transaction, TxEntity

__all__ = [
    "Accepted",
    "AlreadyApplied",
    "CommandInFlight",
    "CommandRefused",
    "Committed",
    "ConcurrencyConflict",
    "DomainError",
    "Effect",
    "Emit",
    "EntityRef",
    "KindSpec",
    "Overloaded",
    "Processor",
    "ProcessorRunner",
    "ProcessorStatus",
    "ReentrantSend",
    "Runtime",
    "RuntimeConfig",
    "RuntimeStats",
    "Send",
    "SyncRuntime",
    "TraceNode",
    "Transaction",
    "TransactionConflict",
    "TxEntity",
    "decide_and_evolve",
    "processor_statuses",
    "render",
    "skip",
    "spec_of",
    "trace",
]

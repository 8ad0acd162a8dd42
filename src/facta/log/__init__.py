"""The log: the only source of truth. Events, appends, reads, subscriptions, backends."""

from facta.log.clock import Clock, SystemClock
from facta.log.config import Durability, LogConfig
from facta.log.errors import (
    AppendTimeout,
    CommitFailed,
    DependencyFailed,
    DuplicateEventId,
    FactaError,
    IdempotencyKeyReused,
    InvalidInput,
    LimitExceeded,
    LogBusy,
    LogClosed,
    Overloaded,
    TrackingConflict,
    WrongExpectedVersion,
)
from facta.log.event import (
    AppendResult,
    Checkpoint,
    Expect,
    Expectation,
    NewEvent,
    OutcomeRecord,
    RecordedEvent,
    StreamAppend,
    StreamWritten,
    Tracking,
    parse_expectation,
)
from facta.log.group_commit import AppendTicket
from facta.log.protocol import Log, LogStats, StreamInfo
from facta.log.registry import EventTypes
from facta.log.sqlite import SqliteLog

__all__ = [
    "AppendResult",
    "AppendTicket",
    "AppendTimeout",
    "Checkpoint",
    "Clock",
    "CommitFailed",
    "DependencyFailed",
    "DuplicateEventId",
    "Durability",
    "EventTypes",
    "Expect",
    "Expectation",
    "FactaError",
    "IdempotencyKeyReused",
    "InvalidInput",
    "LimitExceeded",
    "Log",
    "LogBusy",
    "LogClosed",
    "LogConfig",
    "LogStats",
    "NewEvent",
    "OutcomeRecord",
    "Overloaded",
    "RecordedEvent",
    "SqliteLog",
    "StreamAppend",
    "StreamInfo",
    "StreamWritten",
    "SystemClock",
    "Tracking",
    "TrackingConflict",
    "WrongExpectedVersion",
    "parse_expectation",
]

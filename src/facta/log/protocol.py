"""The log contract every backend implements, and the values it reports.

A backend is small: appends (single- and multi-stream, with expectations, idempotency keys and
outcomes), reads, subscriptions, and stats. The shared contract suite in ``tests/log/contract``
is what makes a backend a facta log.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any, Protocol

import msgspec

from facta.log.event import (
    AppendResult,
    Checkpoint,
    Expectation,
    NewEvent,
    OutcomeRecord,
    RecordedEvent,
    StreamAppend,
    Tracking,
)


class StreamInfo(msgspec.Struct, frozen=True):
    name: str
    version: int
    last_position: int
    last_recorded_at: datetime


class LogStats(msgspec.Struct, frozen=True):
    path: str
    events: int
    streams: int
    outcomes: int
    file_bytes: int
    wal_bytes: int
    durability: str
    effective: dict[str, Any]
    sqlite_version: str
    process: dict[str, Any]


class Log(Protocol):
    """The asynchronous log interface (backends also offer ``*_sync`` twins for scripts)."""

    async def append(
        self,
        stream: str,
        events: Sequence[NewEvent],
        *,
        expect: Expectation = ...,
        key: str | None = None,
        outcome: Any = None,
    ) -> AppendResult: ...

    async def append_many(
        self,
        entries: Sequence[StreamAppend],
        *,
        key: str | None = None,
        outcome: Any = None,
        tracking: Tracking | None = None,
    ) -> AppendResult: ...

    async def lookup(self, key: str) -> OutcomeRecord | None: ...

    async def lookup_many(self, keys: Sequence[str]) -> list[OutcomeRecord | None]: ...

    async def read_stream(
        self,
        stream: str,
        *,
        from_version: int = 1,
        limit: int | None = None,
        backward: bool = False,
    ) -> list[RecordedEvent]: ...

    async def read_all(
        self,
        *,
        after: int = 0,
        limit: int = 1000,
        types: Sequence[str] | None = None,
        stream_prefix: str | None = None,
    ) -> list[RecordedEvent]: ...

    async def head(self) -> int: ...

    async def stream_version(self, stream: str) -> int: ...

    def subscribe(
        self,
        *,
        after: int = 0,
        types: Sequence[str] | None = None,
        stream_prefix: str | None = None,
        page_size: int | None = None,
        idle_timeout: float = 1.0,
    ) -> AsyncIterator[RecordedEvent]: ...

    def subscribe_with_checkpoints(
        self,
        *,
        after: int = 0,
        types: Sequence[str] | None = None,
        stream_prefix: str | None = None,
        page_size: int | None = None,
        checkpoint_every: int | None = None,
        idle_timeout: float = 1.0,
    ) -> AsyncIterator[RecordedEvent | Checkpoint]: ...

    async def stats(self) -> LogStats: ...

    def close(self) -> None: ...

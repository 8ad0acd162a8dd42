"""Outcome lookups gathered: the command ids asked in one turn of the event loop, read at once.

Before deciding, every command and transaction with a command id asks the log whether that id
already has an outcome. Under load many ask at the same moment (all the clients one commit woke
up), so the ids asked during one turn of the loop are read together, in one statement on the
loop's thread at the start of the next turn. One statement releases the GIL once, where a read
per id would let the writer thread in between every two of them, and a worker-thread hop per
read (or per gathered job) costs the loop more in hand-offs and wake-ups than the read itself:
measured on the transfer bench, 64 clients, a hop per gathered job took 12-25 µs more CPU per
transfer and added its own queueing to every transfer's latency.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Final

from facta.log.event import OutcomeRecord
from facta.log.sqlite import SqliteLog

# At most this many ids per statement; the rest wait for the next turn (a bounded read).
MAX_LOOKUPS_PER_JOB: Final = 256

Waiting = list[tuple[str, asyncio.Future[OutcomeRecord | None]]]


class OutcomeLookups:
    """Answers ``lookup(key)`` with one ``log.lookup_many_sync`` per turn of each event loop."""

    def __init__(self, log: SqliteLog) -> None:
        self.log = log
        self.asked = 0  # lookups asked
        self.jobs = 0  # statements that read them (fewer under load)
        # Per loop: the lookups asked since its last read. A loop closed with lookups still
        # waiting leaves them behind with it; another loop keeps its own list.
        self._waiting: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Waiting] = (
            weakref.WeakKeyDictionary()
        )

    async def lookup(self, key: str) -> OutcomeRecord | None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[OutcomeRecord | None] = loop.create_future()
        self.asked += 1
        waiting = self._waiting.get(loop)
        if waiting is None:
            # Read once this turn of the loop is over, so that every command asking in this
            # turn joins the same statement.
            waiting = self._waiting[loop] = []
            loop.call_soon(self._read, loop)
        waiting.append((key, future))
        return await future

    def _read(self, loop: asyncio.AbstractEventLoop) -> None:
        waiting = [(k, f) for k, f in self._waiting.pop(loop, []) if not f.done()]
        batch, rest = waiting[:MAX_LOOKUPS_PER_JOB], waiting[MAX_LOOKUPS_PER_JOB:]
        if rest:
            self._waiting[loop] = rest
            loop.call_soon(self._read, loop)
        if not batch:
            return
        self.jobs += 1
        try:
            records = self.log.lookup_many_sync([key for key, _ in batch])
        except Exception as error:
            for _, future in batch:
                future.set_exception(error)
            return
        for (_, future), record in zip(batch, records, strict=True):
            future.set_result(record)

"""Outcome lookups gathered: one worker-thread job reads every command id asked meanwhile.

Before deciding, every command and transaction with a command id asks the log whether that id
already has an outcome. Reading it on the event loop's thread would stall every other command
(SQLite hands the GIL back and the loop waits for its turn); one worker-thread hop per lookup
costs the loop more than the read itself. So the lookups asked while a read job runs wait for
the next job, which reads them all: under load one hop serves many commands, and a lone
command waits for no one.
"""

from __future__ import annotations

import asyncio
from typing import Final

from facta.log.event import OutcomeRecord
from facta.log.sqlite import SqliteLog

# At most this many ids per job; the rest wait for the next one (a bounded job).
MAX_LOOKUPS_PER_JOB: Final = 256

Waiting = list[tuple[str, asyncio.Future[OutcomeRecord | None]]]


class OutcomeLookups:
    """Reads ``log.lookup_sync`` for many command ids in one worker-thread job at a time."""

    def __init__(self, log: SqliteLog) -> None:
        self.log = log
        self.asked = 0  # lookups asked
        self.jobs = 0  # worker-thread jobs that read them (fewer under load)
        self._waiting: Waiting = []
        # The loop whose job is scheduled or running; None when idle. A job left behind by a
        # closed loop never finishes, so a lookup from another loop starts its own.
        self._loop: asyncio.AbstractEventLoop | None = None

    async def lookup(self, key: str) -> OutcomeRecord | None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[OutcomeRecord | None] = loop.create_future()
        self.asked += 1
        self._waiting.append((key, future))
        if self._loop is not loop:
            # Start the job once this turn of the event loop is over, so that every command
            # that asks in this turn (all those one commit woke up, typically) joins it.
            self._loop = loop
            loop.call_soon(self._start, loop)
        return await future

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        waiting = [(k, f) for k, f in self._waiting if not f.done() and f.get_loop() is loop]
        if not waiting:
            self._waiting = []
            self._loop = None
            return
        batch = waiting[:MAX_LOOKUPS_PER_JOB]
        self._waiting = waiting[MAX_LOOKUPS_PER_JOB:]
        self.jobs += 1
        try:
            job = loop.run_in_executor(None, self._read, [key for key, _ in batch])
        except RuntimeError as error:  # the executor is shut down: the loop is closing
            job = loop.create_future()
            job.set_exception(error)
        job.add_done_callback(lambda done: self._finish(loop, batch, done))

    def _read(self, keys: list[str]) -> list[OutcomeRecord | None]:
        return [self.log.lookup_sync(key) for key in keys]

    def _finish(
        self,
        loop: asyncio.AbstractEventLoop,
        batch: Waiting,
        done: asyncio.Future[list[OutcomeRecord | None]],
    ) -> None:
        error = None if done.cancelled() else done.exception()
        if done.cancelled() or error is not None:
            failure = error or asyncio.CancelledError()
            for _, future in batch:
                if not future.done():
                    future.set_exception(failure)
        else:
            for (_, future), record in zip(batch, done.result(), strict=True):
                if not future.done():  # its caller may have been cancelled meanwhile
                    future.set_result(record)
        if self._loop is not loop:
            return  # a job of a loop that another loop took over from
        if self._waiting and not loop.is_closed():
            self._start(loop)  # those that asked while this job ran: they waited long enough
        else:
            self._loop = None

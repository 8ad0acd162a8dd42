"""Running a processor: micro-batches, exactly-once effects, supervision.

The runner follows the log from the processor's checkpoint. For each micro-batch (at most
``batch_size`` events, or what arrived within ``batch_ms``) it runs the pure handler, turns the
effects into one transaction, and commits it with the tracking record ``(name, last position,
state)`` expected at the previous checkpoint. A crash before the commit loses nothing (the
batch is handled again); after it, nothing is repeated. A second runner of the same processor
meets a :class:`~facta.log.TrackingConflict` and reloads instead of applying twice.

A handler that raises is retried with exponential backoff up to ``max_attempts``; then the
runner records a ``ProcessorFailed`` fact and waits, in state ``failed``, until an operator
skips the event (``facta processors skip NAME POS``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from facta.entities.decider import spec_of
from facta.entities.errors import DomainError
from facta.entities.processor import (
    Effect,
    Emit,
    Processor,
    Send,
    effect_event_id,
    effect_id,
    effect_metadata,
)
from facta.log.errors import FactaError, TrackingConflict, WrongExpectedVersion
from facta.log.event import Checkpoint, NewEvent, RecordedEvent, StreamAppend, Tracking

if TYPE_CHECKING:
    from facta.entities.runtime import Runtime

Item = RecordedEvent | Checkpoint


async def _stop(task: asyncio.Task[None]) -> None:
    # Python 3.11's wait_for can swallow a cancellation that races with its inner future
    # (the subscription waits with wait_for), so cancel until the task is really done.
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.05)
    with contextlib.suppress(asyncio.CancelledError, Exception):
        task.result()


class _Restart(Exception):
    """Reload the tracking record and follow the log again from there."""


class ProcessorRunner:
    """Runs one processor on a runtime. ``await runner.run()`` until cancelled."""

    def __init__(
        self,
        runtime: Runtime,
        processor: Processor,
        *,
        batch_size: int = 100,
        batch_ms: float = 50.0,
        max_attempts: int = 5,
        backoff: float = 0.05,
        poll: float = 0.2,
    ) -> None:
        self.runtime = runtime
        self.log = runtime.log
        self.processor = processor
        self.batch_size = batch_size
        self.batch_ms = batch_ms
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.poll = poll
        self.status = "idle"
        self.checkpoint = 0
        self.state: Any = processor.initial
        self.last_error: str | None = None
        self.batches = 0
        self.handled = 0
        self.effects = 0

    def _load(self) -> None:
        tracking = self.log.tracking_sync(self.processor.name)
        self.checkpoint = 0 if tracking is None else tracking.position
        raw = None if tracking is None else tracking.state
        self.state = self.processor.decode_state(raw)

    async def run(self, *, until: int | None = None) -> None:
        """Follow the log; with ``until``, return once the checkpoint has reached it."""
        self.status = "running"
        try:
            while True:
                self._load()
                if until is not None and self.checkpoint >= until:
                    return
                try:
                    await self._follow(until)
                    return
                except _Restart:
                    continue
        finally:
            if self.status == "running":
                self.status = "stopped"

    async def run_to_head(self) -> None:
        """Process everything committed so far, then return."""
        await self.run(until=await self.log.head())

    async def _follow(self, until: int | None) -> None:
        queue: asyncio.Queue[Item] = asyncio.Queue(maxsize=self.batch_size * 2)
        producer = asyncio.create_task(self._produce(queue))
        try:
            while until is None or self.checkpoint < until:
                items = await self._take(queue, producer)
                await self._process(items)
        finally:
            await _stop(producer)

    async def _produce(self, queue: asyncio.Queue[Item]) -> None:
        p = self.processor
        async for item in self.log.subscribe_with_checkpoints(
            after=self.checkpoint,
            types=p.types,
            stream_prefix=p.stream_prefix,
            page_size=self.batch_size,
        ):
            await queue.put(item)

    async def _take(self, queue: asyncio.Queue[Item], producer: asyncio.Task[None]) -> list[Item]:
        getter = asyncio.ensure_future(queue.get())
        done, _ = await asyncio.wait({getter, producer}, return_when=asyncio.FIRST_COMPLETED)
        if getter not in done:
            getter.cancel()
            producer.result()  # re-raise what stopped the subscription
            raise _Restart
        items = [getter.result()]
        deadline = asyncio.get_running_loop().time() + self.batch_ms / 1000
        events = 1
        while events < self.batch_size:
            try:
                item = queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(queue.get(), remaining)
                except TimeoutError:
                    break
            items.append(item)
            events += isinstance(item, RecordedEvent)
        return items

    async def _process(self, items: list[Item]) -> None:
        state = self.state
        effects: list[tuple[RecordedEvent, int, Effect]] = []
        position = self.checkpoint
        handled = 0
        for item in items:
            if isinstance(item, Checkpoint):
                position = max(position, item.position)
                continue
            try:
                state, produced = await self._handle(state, item)
            except Exception as error:
                if position > self.checkpoint:
                    await self._commit(state, effects, position, handled)
                await self._fail(item, error)
                raise _Restart from error
            effects.extend((item, i, e) for i, e in enumerate(produced))
            position = item.position
            handled += 1
        if position > self.checkpoint:
            await self._commit(state, effects, position, handled)

    async def _handle(self, state: Any, event: RecordedEvent) -> tuple[Any, Sequence[Effect]]:
        for attempt in range(1, self.max_attempts + 1):
            try:
                return self.processor.handle(state, event)
            except Exception as error:
                self.last_error = f"{type(error).__name__}: {error}"
                if attempt == self.max_attempts:
                    raise
                await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
        raise AssertionError("unreachable")

    async def _commit(
        self,
        state: Any,
        effects: list[tuple[RecordedEvent, int, Effect]],
        position: int,
        handled: int,
    ) -> None:
        tracking = Tracking(
            self.processor.name, position, self.processor.encode_state(state), self.checkpoint
        )
        for attempt in range(1, self.runtime.config.conflict_retries + 1):
            tx = await self._stage(effects)
            try:
                await tx.commit(None, None, tracking)
            except WrongExpectedVersion:
                await tx.refresh()
                continue
            except TrackingConflict as conflict:
                raise _Restart from conflict
            except FactaError as error:  # busy, commit failed: try again later
                self.last_error = f"{type(error).__name__}: {error}"
                if attempt >= self.max_attempts:
                    raise
                await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
                continue
            self.checkpoint, self.state = position, state
            self.batches += 1
            self.handled += handled
            self.effects += len(effects)
            return
        raise _Restart

    async def _stage(self, effects: list[tuple[RecordedEvent, int, Effect]]) -> Any:
        tx = self.runtime.transaction_class(self.runtime, None, None, None)
        refused: list[NewEvent] = []
        for cause, index, effect in effects:
            eid = effect_id(self.processor.name, cause.position, index)
            metadata = effect_metadata(cause, eid)
            if isinstance(effect, Send):
                spec = spec_of(effect.kind)
                p = await tx.participant(spec, effect.entity_id)
                saved_state, saved_count = p.state, len(p.staged)
                try:
                    await tx.send(spec, effect.entity_id, effect.command, metadata)
                except DomainError as error:
                    p.state = saved_state
                    del p.staged[saved_count:], p.metadata[saved_count:]
                    refused.append(
                        NewEvent(
                            type="EffectRefused",
                            data={
                                "effect_id": eid,
                                "position": cause.position,
                                "error": type(error).__name__,
                                "message": str(error),
                            },
                            metadata=metadata,
                        )
                    )
            elif isinstance(effect, Emit):
                event = effect.event
                tx.emit(
                    effect.stream,
                    [
                        NewEvent(
                            type=event.type,
                            data=event.data,
                            metadata={**event.metadata, **metadata},
                            schema_version=event.schema_version,
                            id=effect_event_id(eid),
                        )
                    ],
                )
            else:
                raise TypeError(f"processor {self.processor.name!r}: unknown effect {effect!r}")
        if refused:
            tx.emit(self.processor.stream, refused)
        return tx

    async def _fail(self, event: RecordedEvent, error: Exception) -> None:
        """Record the failure as a fact, then wait until the event is skipped."""
        self.last_error = f"{type(error).__name__}: {error}"
        fact = NewEvent(
            type="ProcessorFailed",
            data={
                "position": event.position,
                "error": self.last_error,
                "attempts": self.max_attempts,
            },
        )
        name = self.processor.name
        keep = Tracking(
            name, self.checkpoint, self.processor.encode_state(self.state), self.checkpoint
        )
        with contextlib.suppress(TrackingConflict):
            await self.log.append_many(
                [StreamAppend(self.processor.stream, (fact,))], tracking=keep
            )
        self.status = "failed"  # only once the fact is in the log, so readers agree
        while True:
            tracking = await asyncio.to_thread(self.log.tracking_sync, name)
            if tracking is not None and tracking.position >= event.position:
                self.status = "running"
                return
            await asyncio.sleep(self.poll)

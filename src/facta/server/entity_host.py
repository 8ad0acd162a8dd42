"""Entities and processors inside ``facta serve``: how a project registers its Python code.

Deciders and processors are code, not configuration, so the project names Python modules:
``facta serve --module shop.domain`` (repeatable; the current directory is importable). Each
module may define:

- ``KINDS``: a list of :class:`ServedKind` — a decider plus the commands HTTP clients may send
  it, by name (dataclasses or msgspec Structs, built from the JSON ``data`` of the request);
- ``PROCESSORS``: a list of :class:`~facta.entities.Processor`, run by the server from their
  tracking records (exactly-once effects, as ``ProcessorRunner`` does anywhere else).

Example::

    KINDS = [ServedKind(Account, {"Deposit": Deposit, "Withdraw": Withdraw})]
    PROCESSORS = [Processor("notify", handle, types=("Withdrawn",))]
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from facta.entities import Processor, ProcessorRunner, Runtime
from facta.entities.decider import KindSpec, spec_of
from facta.log.errors import InvalidInput
from facta.log.sqlite import SqliteLog

_log = logging.getLogger("facta.server")


@dataclasses.dataclass(frozen=True)
class ServedKind:
    """A kind of entity served over HTTP, with the commands clients may send by name."""

    kind: Any
    commands: Mapping[str, type[Any]]

    @property
    def spec(self) -> KindSpec:
        return spec_of(self.kind)


@dataclasses.dataclass(frozen=True)
class Registered:
    """What the modules given to ``facta serve --module`` registered."""

    kinds: dict[str, ServedKind]
    processors: list[Processor]


def load_modules(names: Sequence[str]) -> Registered:
    """Import each module and collect its ``KINDS`` and ``PROCESSORS``."""
    if names and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    kinds: dict[str, ServedKind] = {}
    processors: list[Processor] = []
    for name in names:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise InvalidInput(f"--module {name}: cannot import it: {exc}") from None
        found_kinds = getattr(module, "KINDS", [])
        found_processors = getattr(module, "PROCESSORS", [])
        if not found_kinds and not found_processors:
            raise InvalidInput(f"--module {name}: it defines neither KINDS nor PROCESSORS")
        for served in found_kinds:
            if not isinstance(served, ServedKind):
                raise InvalidInput(
                    f"--module {name}: KINDS holds {type(served).__name__}, expected ServedKind"
                )
            kind_name = served.spec.name
            if kind_name in kinds:
                raise InvalidInput(f"--module {name}: kind {kind_name!r} is registered twice")
            kinds[kind_name] = served
        for processor in found_processors:
            if not isinstance(processor, Processor):
                raise InvalidInput(
                    f"--module {name}: PROCESSORS holds {type(processor).__name__}, "
                    "expected Processor"
                )
            processors.append(processor)
    names_seen = [p.name for p in processors]
    if len(set(names_seen)) != len(names_seen):
        raise InvalidInput(f"processor names must be unique, found {names_seen}")
    return Registered(kinds, processors)


class EntityHost:
    """One entity runtime for the server's commands, and a runner per processor."""

    def __init__(self, log: SqliteLog, registered: Registered) -> None:
        self.registered = registered
        self.runtime = Runtime(log)
        self.runners = [ProcessorRunner(self.runtime, p) for p in registered.processors]
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def kinds(self) -> dict[str, ServedKind]:
        return self.registered.kinds

    async def start(self) -> None:
        for runner in self.runners:
            task = asyncio.create_task(
                runner.run(), name=f"facta-processor-{runner.processor.name}"
            )
            task.add_done_callback(_report)
            self._tasks.append(task)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        await self.runtime.aclose()

    def status(self) -> dict[str, dict[str, Any]]:
        """Each running processor's state as this server sees it."""
        return {
            runner.processor.name: {
                "status": runner.status,
                "batches": runner.batches,
                "handled": runner.handled,
                "effects": runner.effects,
                "last_error": runner.last_error,
            }
            for runner in self.runners
        }


def _report(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        _log.error("processor task %s stopped: %r", task.get_name(), task.exception())

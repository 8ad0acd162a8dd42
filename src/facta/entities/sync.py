"""A synchronous facade for scripts and notebooks: the runtime on its own event-loop thread.

>>> with SyncRuntime(SqliteLog("bank.db")) as runtime:  # doctest: +SKIP
...     runtime.entity(Account, "a").send(Deposit(10), command_id="d-1")
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from facta.entities.cache import RuntimeConfig
from facta.entities.decider import KindSpec, spec_of
from facta.entities.outcome import Accepted, Committed
from facta.entities.runtime import Runtime
from facta.entities.transaction import Transaction
from facta.log.sqlite import SqliteLog

T = TypeVar("T")


class SyncRuntime:
    """Blocking versions of ``entity(...).send``, ``state`` and ``transact``."""

    def __init__(self, log: SqliteLog, config: RuntimeConfig | None = None) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="facta-runtime", daemon=True
        )
        self._thread.start()
        self.runtime: Runtime = self._run(_make(log, config))

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def entity(self, kind: Any, entity_id: str) -> SyncEntity:
        return SyncEntity(self, spec_of(kind), entity_id)

    def transact(
        self,
        fn: Callable[[SyncTransaction], T],
        *,
        command_id: str | None = None,
        retries: int = 10,
    ) -> Committed:
        """Run ``fn(tx)`` (a plain function) as a transaction; re-run on conflict."""

        async def run(tx: Transaction) -> T:
            # fn blocks on calls into this loop, so it runs in a worker thread.
            return await asyncio.to_thread(fn, SyncTransaction(self, tx))

        return self._run(self.runtime.transact(run, command_id=command_id, retries=retries))

    def close(self) -> None:
        if not self._loop.is_running():
            return
        self._run(self.runtime.aclose())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5.0)
        self._loop.close()

    def __enter__(self) -> SyncRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SyncEntity:
    def __init__(self, facade: SyncRuntime, spec: KindSpec, entity_id: str) -> None:
        self._facade = facade
        self._ref = facade.runtime.entity(spec.kind, entity_id)

    def send(self, command: Any, *, command_id: str | None = None) -> Accepted:
        return self._facade._run(self._ref.send(command, command_id=command_id))

    def state(self) -> Any:
        return self._facade._run(self._ref.state())


class SyncTransaction:
    def __init__(self, facade: SyncRuntime, tx: Transaction) -> None:
        self._facade = facade
        self._tx = tx

    def send(self, kind: Any, entity_id: str, command: Any) -> list[Any]:
        return self._facade._run(self._tx.entity(kind, entity_id).send(command))

    def state(self, kind: Any, entity_id: str) -> Any:
        return self._facade._run(self._tx.entity(kind, entity_id).state())


async def _make(log: SqliteLog, config: RuntimeConfig | None) -> Runtime:
    return Runtime(log, config)

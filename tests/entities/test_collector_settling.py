"""An entity runtime keeps the collector's full walks off its path: after work, at most every
``settle_every`` seconds, it collects the young objects and freezes what survived (its cached
states), so a full collection never walks them in the middle of a transaction."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
from collections.abc import Awaitable, Callable

from facta.entities import Runtime, RuntimeConfig, Transaction
from facta.log import SqliteLog
from tests.entities.kinds import Account, Deposit, Withdraw


def _move(i: int) -> Callable[[Transaction], Awaitable[None]]:
    async def move(tx: Transaction) -> None:
        await tx.entity(Account, f"a{i % 50}").send(Withdraw(1))
        await tx.entity(Account, f"a{(i + 1) % 50}").send(Deposit(1))

    return move


async def _transfers(runtime: Runtime, count: int) -> None:
    for i in range(50):
        await runtime.entity(Account, f"a{i}").send(Deposit(100))
    for i in range(count):
        await runtime.transact(_move(i))


def _frozen_after(log: SqliteLog, settle_every: float | None) -> int:
    gc.unfreeze()
    config = dataclasses.replace(RuntimeConfig(), settle_every=settle_every)

    async def main() -> int:
        runtime = Runtime(log, config)
        await _transfers(runtime, 200)
        frozen = gc.get_freeze_count()
        await runtime.aclose()
        return frozen

    try:
        return asyncio.run(main())
    finally:
        gc.unfreeze()


def test_a_runtime_freezes_what_its_work_leaves_alive(log: SqliteLog) -> None:
    assert _frozen_after(log, 0.0) > 1000


def test_a_runtime_told_not_to_leaves_the_collector_alone(log: SqliteLog) -> None:
    assert _frozen_after(log, None) == 0

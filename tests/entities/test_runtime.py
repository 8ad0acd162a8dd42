from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from facta.entities import (
    ConcurrencyConflict,
    Overloaded,
    Runtime,
    RuntimeConfig,
    SyncRuntime,
)
from facta.entities.cache import ActiveEntity
from facta.log import NewEvent, SqliteLog
from facta.testing import FakeClock
from tests.entities.kinds import Account, Balance, Deposit, InsufficientFunds, Withdraw


def test_command_appends_events_and_a_new_runtime_rebuilds_state(log_path: Path) -> None:
    async def main() -> None:
        with SqliteLog(log_path) as log:
            runtime = Runtime(log)
            account = runtime.entity(Account, "a")
            accepted = await account.send(Deposit(10), command_id="c-1")
            await account.send(Withdraw(3), command_id="c-2")
            assert (accepted.stream, accepted.version, accepted.replayed) == ("account-a", 1, False)
            assert await account.state() == Balance(7)
            events = log.read_stream_sync("account-a")
            assert [e.type for e in events] == ["Deposited", "Withdrawn"]
            assert events[1].metadata["causation_id"] == "c-2"
        with SqliteLog(log_path) as log:
            assert await Runtime(log).entity(Account, "a").state() == Balance(7)

    asyncio.run(main())


def test_refusal_is_recorded_and_replayed_across_restarts(log_path: Path) -> None:
    async def main() -> None:
        with SqliteLog(log_path) as log:
            runtime = Runtime(log)
            await runtime.entity(Account, "a").send(Deposit(5), command_id="d")
            with pytest.raises(InsufficientFunds) as first:
                await runtime.entity(Account, "a").send(Withdraw(9), command_id="w")
            assert first.value.args == (5, 9) and not first.value.replayed
            assert log.lookup_sync("w") is not None
        with SqliteLog(log_path) as log:
            runtime = Runtime(log)
            # Even with money now available, the recorded refusal stands for this command id.
            await runtime.entity(Account, "a").send(Deposit(50), command_id="d2")
            with pytest.raises(InsufficientFunds) as again:
                await runtime.entity(Account, "a").send(Withdraw(9), command_id="w")
            assert again.value.args == (5, 9) and again.value.replayed
            assert log.head_sync() == 2

    asyncio.run(main())


def test_accepted_command_sent_again_returns_the_recorded_outcome(log: SqliteLog) -> None:
    async def main() -> None:
        runtime = Runtime(log)
        first = await runtime.entity(Account, "a").send(Deposit(5), command_id="d")
        again = await runtime.entity(Account, "a").send(Deposit(5), command_id="d")
        assert again.replayed and not first.replayed
        assert (again.first_position, again.version) == (first.first_position, 1)
        assert log.head_sync() == 1
        assert await runtime.entity(Account, "a").state() == Balance(5)

    asyncio.run(main())


def test_conflict_with_another_process_reloads_and_decides_again(log_path: Path) -> None:
    async def main() -> None:
        with SqliteLog(log_path) as ours, SqliteLog(log_path) as theirs:
            runtime, other = Runtime(ours), Runtime(theirs)
            await runtime.entity(Account, "a").send(Deposit(5))
            await other.entity(Account, "a").send(Deposit(100))  # our cache is now stale
            # Decided on the stale balance (5) this would be refused; after the conflict
            # the entity reloads, sees 105 and accepts.
            await runtime.entity(Account, "a").send(Withdraw(50), command_id="w")
            assert runtime.stats.conflict_retries == 1
            assert await runtime.entity(Account, "a").state() == Balance(55)
            assert ours.stream_version_sync("account-a") == 3

    asyncio.run(main())


class _NeverCatchesUp(Runtime):
    async def catch_up(self, entry: ActiveEntity) -> None:
        entry.activated = True


def test_bounded_conflict_retries_end_in_a_clear_error(log_path: Path) -> None:
    async def main() -> None:
        with SqliteLog(log_path) as log:
            log.append_sync("account-a", [NewEvent(type="Deposited", data={"amount": 1})])
            runtime = _NeverCatchesUp(log, RuntimeConfig(conflict_retries=3))
            with pytest.raises(ConcurrencyConflict) as caught:
                await runtime.entity(Account, "a").send(Deposit(1))
            assert caught.value.attempts == 3
            assert "account-a" in str(caught.value) and "found 1" in str(caught.value)
            assert runtime.stats.conflict_retries == 3

    asyncio.run(main())


def test_full_mailbox_raises_overloaded_after_the_timeout(log: SqliteLog) -> None:
    async def main() -> None:
        runtime = Runtime(log, RuntimeConfig(mailbox_size=1, mailbox_timeout=0.2))
        account = runtime.entity(Account, "a")
        await account.send(Deposit(1))
        entry = runtime.cache.peek("account-a")
        assert entry is not None
        with log.hold_writer():  # the first command waits in its append, holding the entity
            first = asyncio.create_task(account.send(Deposit(1)))
            await _until(lambda: log.queued_appends() == 1)
            second = asyncio.create_task(account.send(Deposit(1), timeout=5.0))  # in the mailbox
            await _until(lambda: entry.waiting == 1)
            with pytest.raises(Overloaded, match="mailbox stayed full"):
                await account.send(Deposit(1), timeout=0.1)
        await first
        await second
        assert await account.state() == Balance(3)
        with log.hold_writer():
            blocked = asyncio.create_task(account.send(Deposit(1)))
            await _until(lambda: log.queued_appends() == 1)
            with pytest.raises(Overloaded, match=r"no turn within 0\.1s"):
                await account.send(Deposit(1), timeout=0.1)
        await blocked


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached within 5 s")


def test_idle_and_surplus_entities_are_passivated(log: SqliteLog) -> None:
    async def main() -> None:
        clock = FakeClock()
        config = RuntimeConfig(idle_after=10.0, max_active=2)
        runtime = Runtime(log, config, monotonic=clock.monotonic)
        for name in ("a", "b", "c"):
            await runtime.entity(Account, name).send(Deposit(1))
        assert list(runtime.cache.entries) == ["account-b", "account-c"]
        clock.advance(11)
        await runtime.entity(Account, "d").send(Deposit(1))
        assert list(runtime.cache.entries) == ["account-d"]
        assert runtime.cache.passivated == 3
        assert await runtime.entity(Account, "a").state() == Balance(1)  # re-activated

    asyncio.run(main())


class AccountV2(Account):
    snapshot_version = 2


def test_snapshots_shorten_activation_and_other_schema_versions_are_ignored(
    log_path: Path,
) -> None:
    async def main() -> None:
        with SqliteLog(log_path) as log:
            runtime = Runtime(log, RuntimeConfig(snapshot_every=3))
            for _ in range(7):
                await runtime.entity(Account, "a").send(Deposit(1))
            await runtime.flush()
            assert runtime.snapshots is not None and runtime.snapshots.written == 2
            from facta.entities.decider import spec_of

            # Prove activation uses the snapshot: plant a false one at version 7.
            runtime.snapshots.save(spec_of(Account), "account-a", 7, Balance(1000))
            await runtime.aclose()
        with SqliteLog(log_path) as log:
            runtime = Runtime(log)
            assert await runtime.entity(Account, "a").state() == Balance(1000)
            await runtime.aclose()
        with SqliteLog(log_path) as log:
            runtime = Runtime(log)
            assert await runtime.entity(AccountV2, "a").state() == Balance(7)
            assert runtime.snapshots is not None and runtime.snapshots.ignored == 1
            await runtime.aclose()

    asyncio.run(main())


def test_sync_facade(log: SqliteLog) -> None:
    with SyncRuntime(log) as runtime:
        runtime.entity(Account, "a").send(Deposit(10), command_id="d")
        with pytest.raises(InsufficientFunds):
            runtime.entity(Account, "a").send(Withdraw(11), command_id="w")

        def transfer(tx: object) -> None:
            from facta.entities.sync import SyncTransaction

            assert isinstance(tx, SyncTransaction)
            tx.send(Account, "a", Withdraw(4))
            tx.send(Account, "b", Deposit(4))

        committed = runtime.transact(transfer, command_id="t")
        assert committed.streams == {"account-a": 2, "account-b": 1}
        assert runtime.entity(Account, "b").state() == Balance(4)


def test_snapshots_taken_together_are_written_together(log_path: Path) -> None:
    """Snapshots are gathered and written in one transaction per gathering window, by a timer
    or by ``flush``; each is stored, and activation reads it."""
    from typing import Any

    from facta.entities.decider import KindSpec
    from facta.entities.snapshots import SnapshotStore

    class CountingStore(SnapshotStore):
        def __init__(self, path: str) -> None:
            super().__init__(path)
            self.writes: list[int] = []

        def save_many(self, snapshots: Any) -> int:
            items: list[tuple[KindSpec, str, int, Any]] = list(snapshots)
            self.writes.append(len(items))
            return super().save_many(items)

    async def main() -> None:
        with SqliteLog(log_path) as log:
            runtime = Runtime(log, RuntimeConfig(snapshot_every=1))
            assert runtime.snapshots is not None
            runtime.snapshots.close()
            store = runtime.snapshots = CountingStore(str(log_path))
            # By the timer: 20 snapshots (4 entities, 5 deposits each), no flush.
            for i in range(20):
                await runtime.entity(Account, f"t{i % 4}").send(Deposit(1))
            for _ in range(500):
                if store.written == 20:
                    break
                await asyncio.sleep(0.01)
            assert store.written == 20
            # Far fewer write transactions than snapshots (one per 0.5 s window).
            assert sum(store.writes) == 20 and len(store.writes) <= 5, store.writes
            # By flush, at once: 12 more.
            for i in range(12):
                await runtime.entity(Account, f"f{i % 3}").send(Deposit(2))
            await runtime.flush()
            assert store.written == 32 and sum(store.writes) == 32
            await runtime.aclose()
        with SqliteLog(log_path) as log:
            runtime = Runtime(log)
            assert await runtime.entity(Account, "t3").state() == Balance(5)
            assert await runtime.entity(Account, "f2").state() == Balance(8)
            assert runtime.snapshots is not None
            rows = runtime.snapshots._connection().execute(
                "SELECT stream, version FROM entity_snapshots ORDER BY stream"
            )
            assert dict(rows) == {**{f"account-t{i}": 5 for i in range(4)}} | {
                f"account-f{i}": 4 for i in range(3)
            }
            await runtime.aclose()

    asyncio.run(main())

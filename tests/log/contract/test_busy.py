"""Another process holding the write lock: appends wait ``lock_timeout``, then fail with
LogBusy naming the file and the wait, and write nothing."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from facta.log import LogBusy, LogConfig, NewEvent

from .backends import Backend
from .conftest import OpenLog

TIMEOUT = 0.5


def test_appends_fail_with_log_busy_after_lock_timeout_and_write_nothing(
    backend: Backend, open_log: OpenLog
) -> None:
    log = open_log(config=LogConfig(lock_timeout=TIMEOUT))
    log.append_sync("s", [NewEvent(type="T")])
    with backend.hold_write_lock(Path(log.path)):
        started = time.monotonic()
        with pytest.raises(LogBusy) as caught:
            log.append_sync("s", [NewEvent(type="T")], expect=1, key="cmd-1")
        waited = time.monotonic() - started

        async def three_at_once() -> list[BaseException | object]:
            return list(
                await asyncio.gather(
                    *(log.append(f"t-{n}", [NewEvent(type="T")]) for n in range(3)),
                    return_exceptions=True,
                )
            )

        answers = asyncio.run(three_at_once())
    error = caught.value
    assert error.path == log.path and log.path in str(error)
    assert error.waited >= TIMEOUT * 0.9, f"gave up after {error.waited:.3f}s"
    assert f"{error.waited:.3f}s" in str(error), str(error)
    assert waited >= TIMEOUT * 0.9, "the append did not wait for the lock"
    assert all(isinstance(a, LogBusy) for a in answers), answers
    assert log.head_sync() == 1, "a busy append wrote events"
    assert log.lookup_sync("cmd-1") is None, "a busy append recorded its key"
    # Once the lock is gone, the same request goes through as new.
    done = log.append_sync("s", [NewEvent(type="T")], expect=1, key="cmd-1")
    assert not done.replayed and done.first_position == 2

"""A processor run in a child process, so tests can SIGKILL it mid-batch.

Usage: python processor_worker.py LOG_PATH BATCH_SIZE
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from typing import Any

from facta.entities import Runtime
from facta.entities.processor import Effect, Emit, Processor, Send
from facta.entities.processor_runner import ProcessorRunner
from facta.log import NewEvent, RecordedEvent, SqliteLog


class Tally:
    """Counts large deposits: a plain decider."""

    name = "tally"
    initial = 0

    @staticmethod
    def decide(command: int, state: int) -> list[NewEvent]:
        return [NewEvent(type="Counted", data={"n": command})]

    @staticmethod
    def evolve(state: int, event: NewEvent) -> int:
        return state + int(event.data["n"])


def notify(state: dict[str, Any], event: RecordedEvent) -> tuple[dict[str, Any], Sequence[Effect]]:
    seen = {"seen": int(state["seen"]) + 1}
    amount = int(event.data.get("amount", 0))
    if event.type != "Deposited" or amount < 100:
        return seen, []
    note = NewEvent(type="LargeDeposit", data={"amount": amount, "account": event.stream})
    return seen, [Emit("notifications", note), Send(Tally, "large", 1)]


NOTIFY = Processor(
    "notify", notify, initial={"seen": 0}, types=("Deposited",), stream_prefix="account-"
)


async def main(path: str, batch_size: int) -> None:
    with SqliteLog(path) as log:
        runner = ProcessorRunner(Runtime(log), NOTIFY, batch_size=batch_size, batch_ms=5)
        await runner.run_to_head()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))

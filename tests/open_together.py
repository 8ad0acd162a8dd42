"""Open one file from several threads at the same moment, as separate processes or servers do."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def open_together(open_one: Callable[[], T], count: int) -> tuple[list[T], list[BaseException]]:
    """Call ``open_one`` from ``count`` threads released together; what opened, what raised."""
    start = threading.Barrier(count)
    errors: list[BaseException] = []
    opened: list[T] = []

    def run() -> None:
        start.wait(5)
        try:
            opened.append(open_one())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return opened, errors

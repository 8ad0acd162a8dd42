"""Pages read and evaluated ahead arrive in order, failures reach the engine, and the GIL
switch interval a rebuild shortens is the process's: overlapping engines share it."""

from __future__ import annotations

import sys
import threading
import time

import numpy as np
import pyarrow as pa
import pytest

from facta.views.pipeline import Evaluated
from facta.views.prefetch import QUEUE_PAGES, SWITCH_SECONDS, PagesAhead, quick_handoff
from facta.views.source import Page


def test_overlapping_engines_restore_the_interval_only_when_the_last_one_ends() -> None:
    before = sys.getswitchinterval()
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen: list[float] = []

    def first() -> None:
        with quick_handoff():
            first_in.set()
            second_in.wait(5)
        first_out.set()

    def second() -> None:
        first_in.wait(5)
        with quick_handoff():
            second_in.set()
            first_out.wait(5)
            seen.append(sys.getswitchinterval())  # the first ended: still short for this one

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert seen == [SWITCH_SECONDS]
    assert sys.getswitchinterval() == before


class _Pages:
    """A stand-in log reader: ``total`` events in pages, failing at page ``fail_at``."""

    def __init__(self, total: int, fail_at: int | None = None) -> None:
        self.total, self.fail_at, self.reads = total, fail_at, 0

    def read(self, after: int, limit: int, *, until: int | None = None) -> Page:
        self.reads += 1
        if self.fail_at is not None and self.reads == self.fail_at:
            raise OSError(f"disk gone at read {self.reads}")
        count = max(0, min(limit, self.total - after))
        table = pa.table({"position": pa.array(range(after + 1, after + count + 1), pa.int64())})
        return Page(table, after, after + count, self.total)


def _evaluated(page: Page) -> Evaluated:
    return Evaluated(page.events, {}, np.zeros(0, dtype=np.int64))


def _drain(ahead: PagesAhead, batch: int) -> list[int]:
    """The first position of each page, until a short page."""
    firsts = []
    while True:
        page, _ = ahead.next()
        firsts.append(page.after + 1)
        if page.events.num_rows < batch:
            return firsts


def test_pages_come_in_log_order() -> None:
    ahead = PagesAhead(_Pages(1050), _evaluated, 100)  # type: ignore[arg-type]
    ahead.start(0, None)
    try:
        assert _drain(ahead, 100) == list(range(1, 1052, 100))
    finally:
        ahead.stop()


@pytest.mark.parametrize("stage", ["read", "evaluate"])
def test_a_failure_reaches_the_engine_after_the_pages_before_it(stage: str) -> None:
    def evaluate(page: Page) -> Evaluated:
        if page.after >= 300:
            raise ValueError(f"bad page after {page.after}")
        return _evaluated(page)

    if stage == "read":
        ahead = PagesAhead(_Pages(1050, fail_at=4), _evaluated, 100)  # type: ignore[arg-type]
        expected: type[Exception] = OSError
    else:
        ahead = PagesAhead(_Pages(1050), evaluate, 100)  # type: ignore[arg-type]
        expected = ValueError
    ahead.start(0, None)
    try:
        firsts = [ahead.next()[0].after for _ in range(3)]
        assert firsts == [0, 100, 200]
        with pytest.raises(expected):
            ahead.next()
    finally:
        ahead.stop()


def test_stopping_returns_while_the_queue_is_full() -> None:
    reader = _Pages(10**9)
    ahead = PagesAhead(reader, _evaluated, 10)  # type: ignore[arg-type]
    ahead.start(0, None)
    deadline = time.monotonic() + 5
    while reader.reads < QUEUE_PAGES + 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    ahead.stop()
    assert time.monotonic() - started < 1.0
    # Bounded: the worker reads at most a queue's worth plus the page it holds.
    assert reader.reads <= QUEUE_PAGES + 1


def test_a_worker_ahead_of_the_engine_refines_the_pages_it_would_wait_with() -> None:
    # Refining is work the engine would do itself: the worker does it only for a page that
    # finds the queue full, and the pages still come in log order, each once.
    def refine(evaluated: Evaluated) -> Evaluated:
        rows = evaluated.rows
        return Evaluated(
            rows.append_column("refined", pa.array([True] * rows.num_rows)),
            {},
            evaluated.rejected_events,
        )

    ahead = PagesAhead(_Pages(1050), _evaluated, 100, refine)  # type: ignore[arg-type]
    ahead.start(0, None)
    try:
        time.sleep(0.3)  # the engine is busy: the worker fills the queue, then waits
        firsts, refined = [], []
        while True:
            page, evaluated = ahead.next()
            assert evaluated is not None
            firsts.append(page.after + 1)
            refined.append("refined" in evaluated.rows.column_names)
            if page.events.num_rows < 100:
                break
    finally:
        ahead.stop()
    assert firsts == list(range(1, 1052, 100))
    # The first QUEUE_PAGES pages found room; the one after them found the queue full.
    assert refined[:QUEUE_PAGES] == [False] * QUEUE_PAGES
    assert refined[QUEUE_PAGES] is True
    assert ahead.refined == sum(refined)

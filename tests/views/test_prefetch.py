"""The GIL switch interval a rebuild shortens is the process's: overlapping engines share it."""

from __future__ import annotations

import sys
import threading

from facta.views.prefetch import SWITCH_SECONDS, quick_handoff


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

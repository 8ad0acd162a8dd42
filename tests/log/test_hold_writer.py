"""hold_writer() keeps appends queued until its block ends, even when the log pauses the writer
itself meanwhile (stats and the WAL checkpointer use the same pause)."""

from __future__ import annotations

import threading

from facta.log import NewEvent, SqliteLog


def test_a_nested_pause_does_not_release_the_outer_hold(log: SqliteLog) -> None:
    results: list[int | None] = []

    def append() -> None:
        results.append(log.append_sync("acc-1", [NewEvent(type="Opened")]).first_position)

    with log.hold_writer():
        writer = threading.Thread(target=append)
        writer.start()
        while log.queued_appends() < 1:
            writer.join(0.001)
        log.stats_sync()  # pauses and resumes the writer inside the outer hold
        writer.join(0.2)
        assert writer.is_alive() and log.queued_appends() == 1, "the append ran inside the hold"
    writer.join(5.0)
    assert results == [1]


def test_a_pause_gets_in_while_a_lone_caller_appends_in_a_loop(log: SqliteLog) -> None:
    """A caller that finds the writer idle runs its own batch; it must not take the lead again
    while a pause (the WAL checkpointer's, say) waits, or the checkpoint never gets in."""
    stop = threading.Event()
    appended: list[int] = []

    def append_until_stopped() -> None:
        while not stop.is_set():
            appended.append(
                log.append_sync("loop-1", [NewEvent(type="Ticked")]).first_position or 0
            )

    appender = threading.Thread(target=append_until_stopped)
    appender.start()
    try:
        while len(appended) < 20:
            appender.join(0.001)
        before = log.head_sync()
        with log.hold_writer():
            inside = log.head_sync()
    finally:
        stop.set()
        appender.join(10.0)
    assert len(appended) >= 20, f"the loop appended only {len(appended)} events"
    # The batch running when the pause asked (and one racing the head read) may finish; no more.
    assert inside - before <= 2, f"{inside - before} appends committed while the pause waited"

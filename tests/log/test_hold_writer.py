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

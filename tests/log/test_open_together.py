"""Logs opening a new file at the same moment (two writer processes started together, as the
crash test does, or ``facta serve`` and a CLI command) all open it."""

from __future__ import annotations

import functools
from pathlib import Path

from facta.log import NewEvent, SqliteLog
from tests.open_together import open_together


def test_logs_opening_a_new_file_together_all_open(tmp_path: Path) -> None:
    # Without the retry in switch_to_wal, 5 of 40 rounds failed here (LogBusy at once).
    for round_ in range(40):
        path = tmp_path / f"log-{round_}.db"
        logs, errors = open_together(functools.partial(SqliteLog, path), 4)
        try:
            assert errors == [], f"round {round_}: {errors!r}"
            assert len(logs) == 4
            for number, log in enumerate(logs):
                log.append_sync(f"s-{number}", [NewEvent(type="Opened", data={"n": number})])
            assert logs[0].head_sync() == 4
            assert logs[0].effective_durability()["journal_mode"] == "wal"
        finally:
            for log in logs:
                log.close()

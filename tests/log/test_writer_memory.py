"""The writer remembers the head and stream versions between batches; another writer on the
same file must make it read them again, or expectations would be checked against stale state."""

from __future__ import annotations

from pathlib import Path

import pytest

from facta.log import CommitFailed, NewEvent, SqliteLog, WrongExpectedVersion
from facta.log.sqlite_write import SqliteWriter


def ev() -> NewEvent:
    return NewEvent(type="Happened", data={"n": 1})


class NeverForgets(SqliteWriter):
    """Broken on purpose: keeps its memory even after another connection committed."""

    def _forget(self) -> None:
        self._staged = None


class ForgetfulLog(SqliteLog):
    writer_class = NeverForgets


def interleave(first: SqliteLog, second: SqliteLog) -> None:
    first.append_sync("acc-1", [ev()], expect=0)
    second.append_sync("acc-1", [ev()], expect=1)
    # ``first`` last saw version 1 and head 1; the file now holds version 2 and head 2.
    first.append_sync("acc-1", [ev()], expect=1)


def test_a_commit_by_another_connection_is_seen(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    with SqliteLog(path) as first, SqliteLog(path) as second:
        with pytest.raises(WrongExpectedVersion) as caught:
            interleave(first, second)
        assert (caught.value.expected, caught.value.actual) == (1, 2)
        result = first.append_sync("acc-1", [ev()], expect=2)
        assert (result.first_position, result.version_of("acc-1")) == (3, 3)
        assert [e.position for e in first.read_all_sync()] == [1, 2, 3]


def test_negative_control_a_writer_that_never_forgets_is_caught(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    with ForgetfulLog(path) as first, SqliteLog(path) as second:
        # The stale writer passes the expectation it should refuse; only the unique index
        # on (stream, version) stops the write, so the append fails for the wrong reason.
        with pytest.raises(CommitFailed) as caught:
            interleave(first, second)
        assert "UNIQUE constraint failed" in str(caught.value)

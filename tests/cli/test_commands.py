from __future__ import annotations

from pathlib import Path

from facta.cli import exit_code_of
from facta.log import (
    CommitFailed,
    DuplicateEventId,
    IdempotencyKeyReused,
    InvalidInput,
    LogBusy,
    SqliteLog,
    WrongExpectedVersion,
)
from tests.cli.console import Facta, run_facta


def test_append_prints_positions_and_version_then_read_returns_the_events(
    facta: Facta, log_path: Path
) -> None:
    first = facta("append", "acc-1", "Opened", '{"owner": "ann"}', "--expect", "none")
    assert first.code == 0, first.stderr
    assert first.json_lines() == [
        {
            "stream": "acc-1",
            "version": 1,
            "first_position": 1,
            "last_position": 1,
            "events": 1,
            "replayed": False,
        }
    ]
    second = facta(
        "append", "acc-1", "Deposited", '{"amount": 5}', "--expect", "1", "--meta", '{"by": "x"}'
    )
    assert second.json_lines()[0]["version"] == 2
    events = facta("read", "acc-1").json_lines()
    assert [(e["position"], e["version"], e["type"]) for e in events] == [
        (1, 1, "Opened"),
        (2, 2, "Deposited"),
    ]
    assert events[0]["data"] == {"owner": "ann"}
    assert events[1]["metadata"] == {"by": "x"}
    assert set(events[0]) == {
        "position",
        "stream",
        "version",
        "type",
        "schema_version",
        "id",
        "recorded_at",
        "data",
        "metadata",
    }
    with SqliteLog(log_path) as log:
        assert [e.data for e in log.read_stream_sync("acc-1")] == [{"owner": "ann"}, {"amount": 5}]


def test_append_reads_one_object_or_json_lines_from_stdin(facta: Facta) -> None:
    one = facta("append", "s", "Noted", "-", stdin='{\n  "text": "multi-line object"\n}\n')
    assert one.code == 0, one.stderr
    several = facta("append", "s", "Noted", "-", stdin='{"n": 1}\n\n{"n": 2}\n{"n": 3}\n')
    assert several.json_lines()[0] | {"replayed": False} == {
        "stream": "s",
        "version": 4,
        "first_position": 2,
        "last_position": 4,
        "events": 3,
        "replayed": False,
    }
    data = [e["data"] for e in facta("read", "s").json_lines()]
    assert data == [{"text": "multi-line object"}, {"n": 1}, {"n": 2}, {"n": 3}]


def test_idempotency_key_replays_the_original_append(facta: Facta) -> None:
    original = facta("append", "s", "Paid", '{"n": 1}', "--key", "pay-1").json_lines()[0]
    facta("append", "s", "Paid", '{"n": 2}')
    again = facta("append", "s", "Paid", '{"n": 1}', "--key", "pay-1").json_lines()[0]
    assert again["replayed"] is True and original["replayed"] is False
    assert again["last_position"] == original["last_position"] == 1
    assert len(facta("read", "s").json_lines()) == 2
    facta("append", "s", "Paid", '{"n": 99}', "--key", "pay-1").assert_one_line_error(
        2, "pay-1", "different request"
    )


def test_failed_expectation_exits_3_with_one_line_naming_stream_and_versions(
    facta: Facta,
) -> None:
    facta("append", "acc-7", "Opened")
    result = facta("append", "acc-7", "Opened", "--expect", "none")
    result.assert_one_line_error(3, "acc-7", "expected no stream", "found version 1")
    facta("append", "acc-7", "Closed", "--expect", "5").assert_one_line_error(
        3, "expected version 5", "found version 1"
    )
    facta("append", "new", "Closed", "--expect", "exists").assert_one_line_error(3, "'new'")
    assert len(facta("read", "acc-7").json_lines()) == 1


def test_bad_input_exits_2_with_one_line_and_writes_nothing(facta: Facta, log_path: Path) -> None:
    facta("append", "s", "T", "{not json").assert_one_line_error(2, "DATA is not valid JSON")
    facta("append", "s", "T", "[1, 2]").assert_one_line_error(2, "JSON object", "list")
    facta("append", "bad name", "T").assert_one_line_error(2, "invalid stream name 'bad name'")
    facta("append", "s", "T", '{"x": 1e999}').assert_one_line_error(2, "not valid JSON")
    facta("append", "s", "T", "--expect", "soon").assert_one_line_error(2, "'soon'")
    facta("append", "s", "T", "--meta", "[]").assert_one_line_error(2, "metadata")
    facta("append", "s", "T", "-", stdin="").assert_one_line_error(2, "stdin is empty")
    facta("append", "s", "T", "--no-such-option").assert_one_line_error(2, "--no-such-option")
    facta("append").assert_one_line_error(2, "Missing argument 'stream'", "facta append --help")
    facta("read").assert_one_line_error(2, "STREAM or --all")
    facta("read", "s", "--all").assert_one_line_error(2, "STREAM or --all")
    facta("read", "--all", "--limit", "0").assert_one_line_error(2, "--limit")
    facta("read", "--all", "--after", "x").assert_one_line_error(2, "--after")
    with SqliteLog(log_path) as log:
        assert log.head_sync() == 0


def test_reading_commands_refuse_a_missing_log(tmp_path: Path) -> None:
    missing = str(tmp_path / "nothing.db")
    for command in (["read", "s"], ["read", "--all"], ["streams"], ["stats"], ["tail"]):
        result = run_facta(*command, "--log", missing)
        result.assert_one_line_error(2, "does not exist")
    assert not (tmp_path / "nothing.db").exists()
    run_facta("stats", "--log", str(tmp_path)).assert_one_line_error(2, "is a directory")
    (tmp_path / "text.db").write_text("not a database, just text\n" * 100)
    run_facta("stats", "--log", str(tmp_path / "text.db")).assert_one_line_error(
        2, "is not a SQLite database"
    )


def test_log_option_overrides_the_environment(facta: Facta, tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    assert facta("append", "s", "T", "--log", str(other)).code == 0
    with SqliteLog(other) as log:
        assert log.head_sync() == 1
    facta("read", "s").assert_one_line_error(2, "does not exist")


def test_read_all_filters_by_position_type_prefix_and_limit(facta: Facta) -> None:
    for stream, kind in [("a-1", "X"), ("b-1", "Y"), ("a-2", "X"), ("a-1", "Y"), ("b-2", "X")]:
        assert facta("append", stream, kind).code == 0

    def positions(*args: str) -> list[int]:
        return [e["position"] for e in facta("read", "--all", *args).json_lines()]

    assert positions() == [1, 2, 3, 4, 5]
    assert positions("--after", "2") == [3, 4, 5]
    assert positions("--type", "X") == [1, 3, 5]
    assert positions("--type", "X", "--type", "Y", "--after", "3") == [4, 5]
    assert positions("--prefix", "a-") == [1, 3, 4]
    assert positions("--limit", "2", "--after", "1") == [2, 3]
    backward = facta("read", "a-1", "--backward").json_lines()
    assert [e["version"] for e in backward] == [2, 1]


def test_read_all_pages_through_a_log_larger_than_one_page(facta: Facta) -> None:
    lines = "".join(f'{{"n": {n}}}\n' for n in range(2_500))
    assert facta("append", "big", "N", "-", stdin=lines).code == 0
    everything = facta("read", "--all").json_lines()
    assert [e["data"]["n"] for e in everything] == list(range(2_500))
    stream = facta("read", "big", "--from-version", "1001").json_lines()
    assert [e["version"] for e in stream] == list(range(1001, 2501))


def test_streams_lists_name_version_and_last_time(facta: Facta) -> None:
    facta("append", "acc-2", "T")
    facta("append", "acc-1", "T", "-", stdin='{"a": 1}\n{"a": 2}\n')
    rows = facta("streams", "--json").json_lines()
    assert [(r["stream"], r["version"], r["last_position"]) for r in rows] == [
        ("acc-1", 2, 3),
        ("acc-2", 1, 1),
    ]
    assert all(r["last_recorded_at"].endswith("Z") for r in rows)
    table = facta("streams")
    assert table.code == 0 and "acc-1" in table.stdout and "acc-2" in table.stdout


def test_stats_shows_counts_sizes_and_durability_read_back(facta: Facta) -> None:
    facta("append", "s", "T", "-", stdin='{"a": 1}\n{"a": 2}\n')
    facta("append", "t", "T", "--key", "k")
    stats = facta("stats", "--json").json_lines()[0]
    assert (stats["events"], stats["streams"], stats["outcomes"]) == (3, 2, 1)
    assert stats["file_bytes"] > 0 and stats["wal_bytes"] >= 0
    assert stats["durability"] == "strict"
    assert stats["effective"]["synchronous"] == "FULL"
    assert stats["effective"]["journal_mode"] == "wal"
    assert {"append_latency_us", "batch_appends", "queue_depth", "conflicts"} <= set(
        stats["process"]
    )
    table = facta("stats")
    assert table.code == 0
    assert "synchronous=FULL" in table.stdout and "WAL size" in table.stdout


def test_help_lists_every_command() -> None:
    result = run_facta("--help")
    assert result.code == 0
    for command in ("append", "read", "tail", "streams", "stats", "import"):
        assert command in result.stdout


def test_every_facta_error_maps_to_its_documented_exit_status() -> None:
    assert exit_code_of(WrongExpectedVersion("s", 1, 2)) == 3
    for bad_input in (InvalidInput("x"), IdempotencyKeyReused("k"), DuplicateEventId("i")):
        assert exit_code_of(bad_input) == 2
    for failure in (LogBusy("facta.db", 5.0), CommitFailed("facta.db", OSError("disk full"))):
        assert exit_code_of(failure) == 1

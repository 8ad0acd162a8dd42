from __future__ import annotations

import json
from pathlib import Path

from facta.log import SqliteLog
from tests.cli.console import Facta


def write_rows(tmp_path: Path) -> Path:
    source = tmp_path / "people.csv"
    source.write_text("id,name,age\n1,ann,31\n2,bob\n3,cy,40\n,dee,50\n5,eve,28\n")
    return source


def test_import_prints_a_summary_and_writes_rejects(facta: Facta, tmp_path: Path) -> None:
    source = write_rows(tmp_path)
    rejects = tmp_path / "bad.jsonl"
    result = facta(
        "import", str(source), "--type", "PersonListed", "--stream", "person-{id}",
        "--batch-size", "2", "--rejects", str(rejects),
    )  # fmt: skip
    assert result.code == 0, result.stderr
    (summary,) = result.json_lines()
    assert {k: summary[k] for k in ("records", "events", "written", "rejected", "batches")} == {
        "records": 5,
        "events": 3,
        "written": 3,
        "rejected": 2,
        "batches": 3,
    }
    assert summary["rejects_file"] == str(rejects)
    assert [json.loads(line)["line"] for line in rejects.read_text().splitlines()] == [3, 5]
    people = facta("read", "--all", "--type", "PersonListed").json_lines()
    assert [(p["stream"], p["data"]["age"]) for p in people] == [
        ("person-1", 31),
        ("person-3", 40),
        ("person-5", 28),
    ]


def test_template_naming_a_missing_column_is_refused_before_the_log_exists(
    facta: Facta, tmp_path: Path, log_path: Path
) -> None:
    source = write_rows(tmp_path)
    result = facta("import", str(source), "--type", "PersonListed", "--stream", "p-{email}")
    result.assert_one_line_error(2, "'email', not a column", "id, name, age")
    assert not log_path.exists()


def test_resuming_with_another_batch_size_is_refused(
    facta: Facta, tmp_path: Path, log_path: Path
) -> None:
    source = write_rows(tmp_path)
    args = ["import", str(source), "--type", "PersonListed", "--stream", "person-{id}"]
    assert facta(*args, "--batch-size", "2").code == 0
    facta(*args, "--batch-size", "3").assert_one_line_error(
        2, "--batch-size 2", "found 3", "people.csv"
    )
    again = facta(*args, "--batch-size", "2")
    assert again.json_lines()[0]["written"] == 0
    with SqliteLog(log_path) as log:
        assert log.head_sync() == 3


def test_on_error_abort_exits_2_naming_the_line_and_keeps_earlier_batches(
    facta: Facta, tmp_path: Path, log_path: Path
) -> None:
    source = write_rows(tmp_path)
    result = facta(
        "import", str(source), "--type", "PersonListed", "--stream", "person-{id}",
        "--batch-size", "1", "--on-error", "abort",
    )  # fmt: skip
    result.assert_one_line_error(2, "line 3", "expected 3 fields, found 2", "nothing of batch 1")
    with SqliteLog(log_path) as log:
        assert [e.stream for e in log.read_all_sync()] == ["person-1"]
    bad_choice = facta(
        "import", str(source), "--type", "T", "--stream", "p-{id}", "--on-error", "x"
    )
    bad_choice.assert_one_line_error(2, "--on-error")


def test_progress_bar_is_drawn_on_stderr_when_asked(facta: Facta, tmp_path: Path) -> None:
    source = write_rows(tmp_path)
    result = facta(
        "import", str(source), "--type", "PersonListed", "--stream", "person-{id}", "--progress"
    )
    assert result.code == 0, result.stderr
    assert "people.csv" in result.stderr and "5/5" in result.stderr
    assert result.json_lines()[0]["records"] == 5
    quiet = facta("import", str(source), "--type", "PersonListed", "--stream", "person-{id}")
    assert quiet.stderr == ""


def test_a_reject_file_that_cannot_be_written_is_bad_input(facta: Facta, tmp_path: Path) -> None:
    source = write_rows(tmp_path)
    result = facta(
        "import", str(source), "--type", "PersonListed", "--stream", "person-{id}",
        "--rejects", str(tmp_path / "missing-dir" / "rejects.jsonl"),
    )  # fmt: skip
    result.assert_one_line_error(2, "No such file or directory", "missing-dir")

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from facta.importer import (
    FileImport,
    ImportAborted,
    ImportProgress,
    ImportSettings,
    import_file,
)
from facta.log import InvalidInput, RecordedEvent, SqliteLog


def settings(stream: str = "row-{id}", **options: Any) -> ImportSettings:
    return ImportSettings(event_type="RowImported", stream=stream, **options)


def events_of(log: SqliteLog) -> list[RecordedEvent]:
    return log.read_all_sync(limit=10_000)


def rejects_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_csv_values_get_json_types_inferred_per_column(tmp_path: Path, log: SqliteLog) -> None:
    source = tmp_path / "rows.csv"
    source.write_text(
        "id,count,ratio,flag,note,day,empty\n"
        "a-1,1,1.5,true,hello,2013-01-01,\n"
        'a-2,,2,false,"",2013-01-02,\n'
        'a-3,NA,NaN,,"multi\nline",2013-01-03T10:00:00Z,\n'
    )
    summary = import_file(log, source, settings())
    assert (summary.records, summary.events, summary.rejected) == (3, 3, 0)
    events = events_of(log)
    assert [e.data for e in events] == [
        {"id": "a-1", "count": 1, "ratio": 1.5, "flag": True, "note": "hello",
         "day": "2013-01-01", "empty": None},
        {"id": "a-2", "count": None, "ratio": 2.0, "flag": False, "note": "",
         "day": "2013-01-02", "empty": None},
        {"id": "a-3", "count": None, "ratio": None, "flag": None, "note": "multi\nline",
         "day": "2013-01-03T10:00:00Z", "empty": None},
    ]  # fmt: skip
    assert [e.stream for e in events] == ["row-a-1", "row-a-2", "row-a-3"]
    assert [e.metadata["line"] for e in events] == [2, 3, 4]
    assert {e.type for e in events} == {"RowImported"}


def test_bad_records_go_to_the_reject_file_with_line_and_reason(
    tmp_path: Path, log: SqliteLog
) -> None:
    source = tmp_path / "rows.csv"
    source.write_text("id,value\na,1\nb,2,extra\n,3\nc,inf\nd,4\n")
    summary = import_file(log, source, settings(batch_size=2))
    assert (summary.records, summary.events, summary.rejected, summary.batches) == (5, 2, 3, 3)
    assert [e.data for e in events_of(log)] == [
        {"id": "a", "value": 1.0},
        {"id": "d", "value": 4.0},
    ]
    rejects_file = tmp_path / "rows.csv.rejects.jsonl"
    assert summary.rejects_file == str(rejects_file)
    rejects = rejects_of(rejects_file)
    assert [(r["line"], r["record"]) for r in rejects] == [
        (3, ["b", "2", "extra"]),
        (4, {"id": None, "value": 3.0}),
        (5, {"id": "c", "value": None}),  # inf is kept in the reject file as null
    ]
    assert rejects[0]["reason"] == "expected 2 fields, found 3"
    assert rejects[1]["reason"] == "column 'id' is null (the stream template needs it)"
    assert "non-finite" in rejects[2]["reason"]


def test_rerunning_an_import_writes_nothing_and_rebuilds_the_reject_file_from_the_log(
    tmp_path: Path, log: SqliteLog
) -> None:
    source = tmp_path / "rows.csv"
    source.write_text("id,value\na,1\n,2\nb,3\n,4\nc,5\n")
    first = import_file(log, source, settings(batch_size=2))
    rejects_file = tmp_path / "rows.csv.rejects.jsonl"
    expected = rejects_file.read_text()
    assert len(expected.splitlines()) == 2
    rejects_file.write_text(expected + '{"line": 99, "reason": "left over"}\n')
    again = import_file(log, source, settings(batch_size=2))
    assert (again.written, again.skipped_batches, again.events) == (0, 3, first.events)
    assert rejects_file.read_text() == expected
    assert len(events_of(log)) == 3


def test_an_interrupted_import_resumes_where_it_stopped(tmp_path: Path, log: SqliteLog) -> None:
    source = tmp_path / "rows.csv"
    source.write_text("id\n" + "".join(f"r{n}\n" for n in range(10)) + ",\n")

    class Crash(Exception):
        pass

    def crash_after_two(progress: ImportProgress) -> None:
        if progress.batches == 2:
            raise Crash

    with pytest.raises(Crash):
        import_file(log, source, settings(batch_size=3), on_progress=crash_after_two)
    assert len(events_of(log)) == 6
    resumed = import_file(log, source, settings(batch_size=3))
    assert (resumed.skipped_batches, resumed.batches, resumed.written) == (2, 4, 4)
    assert [e.data["id"] for e in events_of(log)] == [f"r{n}" for n in range(10)]
    assert [r["line"] for r in rejects_of(tmp_path / "rows.csv.rejects.jsonl")] == [12]
    with pytest.raises(InvalidInput) as caught:
        import_file(log, source, settings(batch_size=4))
    assert "--batch-size 3" in str(caught.value) and "found 4" in str(caught.value)
    with pytest.raises(InvalidInput, match="--stream"):
        import_file(log, source, settings(stream="other-{id}", batch_size=3))
    assert len(events_of(log)) == 10


def test_abort_stops_at_the_first_bad_record_with_nothing_of_its_batch_written(
    tmp_path: Path, log: SqliteLog
) -> None:
    source = tmp_path / "rows.csv"
    source.write_text("id,value\na,1\nb,2\nc,x,y\nd,4\ne,5\n")
    with pytest.raises(ImportAborted) as caught:
        import_file(log, source, settings(batch_size=2, on_error="abort"))
    assert (caught.value.line, caught.value.reason) == (4, "expected 2 fields, found 3")
    assert "line 4" in str(caught.value) and "nothing of batch 1" in str(caught.value)
    assert [e.data["id"] for e in events_of(log)] == ["a", "b"]
    assert not (tmp_path / "rows.csv.rejects.jsonl").exists()


def test_abort_also_stops_on_a_record_only_the_log_refuses(tmp_path: Path, log: SqliteLog) -> None:
    source = tmp_path / "rows.jsonl"
    big = "x" * (log.config.max_event_bytes + 1)
    source.write_text(f'{{"id": "a"}}\n{{"id": "b", "text": "{big}"}}\n{{"id": "c"}}\n')
    with pytest.raises(ImportAborted) as caught:
        import_file(log, source, settings(batch_size=5, on_error="abort"))
    assert caught.value.line == 2 and "max_event_bytes" in caught.value.reason
    assert events_of(log) == []


def test_json_lines_keep_parsed_values_and_count_blank_lines(
    tmp_path: Path, log: SqliteLog
) -> None:
    source = tmp_path / "rows.jsonl"
    source.write_text(
        '\ufeff{"id": "a", "nested": {"k": [1, 2.5, null]}, "ok": true}\r\n'
        "\n"
        "{not json\n"
        "[1, 2]\n"
        '{"id": "b"}\n'
    )
    summary = import_file(log, source, settings())
    assert (summary.records, summary.events, summary.rejected) == (4, 2, 2)
    events = events_of(log)
    assert events[0].data == {"id": "a", "nested": {"k": [1, 2.5, None]}, "ok": True}
    assert [e.metadata["line"] for e in events] == [1, 5]
    rejects = rejects_of(tmp_path / "rows.jsonl.rejects.jsonl")
    assert [r["line"] for r in rejects] == [3, 4]
    assert rejects[0]["reason"].startswith("invalid JSON") and rejects[0]["record"] == "{not json"
    assert rejects[1]["reason"] == "expected a JSON object, found list"


def test_parquet_types_become_json_and_rows_are_numbered(tmp_path: Path, log: SqliteLog) -> None:
    source = tmp_path / "rows.parquet"
    table = pa.table(
        {
            "id": ["a", "b", "c"],
            "n": pa.array([1, None, 3], pa.int32()),
            "x": [0.5, float("nan"), 2.0],
            "at": pa.array([0, 1_000_000, 2_000_000], pa.timestamp("us", tz="UTC")),
            "tags": [["p"], [], ["q", "r"]],
        }
    )
    pq.write_table(table, source, row_group_size=2)
    summary = import_file(log, source, settings(batch_size=2))
    assert (summary.records, summary.events, summary.rejected) == (3, 2, 1)
    events = events_of(log)
    assert events[0].data == {
        "id": "a",
        "n": 1,
        "x": 0.5,
        "at": "1970-01-01T00:00:00Z",
        "tags": ["p"],
    }
    assert [e.metadata["line"] for e in events] == [1, 3]
    (reject,) = rejects_of(tmp_path / "rows.parquet.rejects.jsonl")
    assert reject["line"] == 2 and "non-finite" in reject["reason"]


def test_the_same_rows_in_csv_json_lines_and_parquet_give_the_same_events(
    tmp_path: Path,
) -> None:
    rows = [
        {"id": "a", "n": 1, "x": 1.5, "s": "text", "b": True},
        {"id": "b", "n": None, "x": 2.0, "s": None, "b": False},
    ]
    (tmp_path / "rows.csv").write_text("id,n,x,s,b\na,1,1.5,text,true\nb,,2.0,,false\n")
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "rows.parquet")
    seen = []
    for name in ("rows.csv", "rows.jsonl", "rows.parquet"):
        with SqliteLog(tmp_path / f"{name}.db") as log:
            import_file(log, tmp_path / name, settings())
            seen.append([(e.stream, e.version, e.data) for e in events_of(log)])
    assert seen[0] == seen[1] == seen[2]
    assert [data for _, _, data in seen[0]] == rows


def test_refusals_happen_before_the_log_is_touched(tmp_path: Path) -> None:
    source = tmp_path / "rows.csv"
    source.write_text("id,value\na,1\n")
    cases: list[tuple[dict[str, Any], str]] = [
        ({"stream": "row-{nope}"}, "'nope', not a column of the file"),
        ({"format": "xml"}, "unknown format 'xml'"),
        ({"batch_size": 0}, "batch size must be between 1 and 10000, found 0"),
        ({"batch_size": 10_001}, "batch size must be between 1 and 10000, found 10001"),
    ]
    for options, reason in cases:
        with pytest.raises(InvalidInput, match=reason):
            FileImport(source, settings(**options))
    with pytest.raises(InvalidInput, match="does not exist"):
        FileImport(tmp_path / "missing.csv", settings())
    with pytest.raises(InvalidInput, match="cannot tell the format"):
        FileImport(tmp_path / "rows.txt", settings())
    with pytest.raises(InvalidInput, match="invalid event type"):
        FileImport(source, ImportSettings(event_type="bad type", stream="row-{id}"))


def test_csv_with_bom_and_crlf_line_ends_reads_like_plain_csv(
    tmp_path: Path, log: SqliteLog
) -> None:
    source = tmp_path / "rows.csv"
    source.write_bytes(b"\xef\xbb\xbfid,n\r\na,1\r\n\r\nb,2\r\n")
    import_file(log, source, settings())
    events = events_of(log)
    assert [(e.stream, e.data, e.metadata["line"]) for e in events] == [
        ("row-a", {"id": "a", "n": 1}, 2),
        ("row-b", {"id": "b", "n": 2}, 4),
    ]


def test_csv_with_duplicate_column_names_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "rows.csv"
    source.write_text("id,n,n\na,1,2\n")
    with pytest.raises(InvalidInput, match="column names must be unique, found 'n' twice"):
        FileImport(source, settings())

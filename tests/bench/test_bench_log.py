"""The bench command runs end to end and prints well-formed lines (speed is not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

EXPECTED = {
    "append_sequential_strict",
    "append_concurrent_strict",
    "append_concurrent_sustained",
    "append_batch_strict",
    "read_all_decoded",
}


def run_bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "facta.bench", "log", *args],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


@pytest.fixture(scope="module")
def quick_lines() -> list[dict[str, Any]]:
    done = run_bench("--quick", "--pairs", "1")
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_quick_run_prints_one_line_per_benchmark(quick_lines: list[dict[str, Any]]) -> None:
    assert [line["name"] for line in quick_lines] == [
        "append_sequential_strict",
        "append_concurrent_strict",
        "append_concurrent_sustained",
        "append_batch_strict",
        "read_all_decoded",
    ]


def test_every_line_has_value_baseline_ratio_and_environment(
    quick_lines: list[dict[str, Any]],
) -> None:
    for line in quick_lines:
        for key in ("value", "baseline_value", "ratio"):
            assert isinstance(line[key], float) and line[key] > 0, (line["name"], key)
        assert line["unit"] == "events/s"
        assert line["baseline_name"]
        assert line["ratio"] == pytest.approx(line["pair_ratios"][0], abs=1e-3)
        assert line["driver"].startswith("apsw ")
        assert line["sqlite_version"].count(".") == 2
        assert line["synchronous"] == "FULL"
        assert line["journal_mode"] == "wal"
        assert line["n"] > 0
        if line["loadavg"] is not None:
            assert len(line["loadavg"]) == 3


def test_concurrent_lines_report_latency_and_refusals(quick_lines: list[dict[str, Any]]) -> None:
    concurrent = [line for line in quick_lines if line["name"].startswith("append_concurrent")]
    assert len(concurrent) == 2
    for line in concurrent:
        assert 0 < line["p50_ms"] <= line["p99_ms"]
        # 1 % of the appends carry a deliberately wrong expectation and must be refused.
        assert line["wrong_expectations"] >= line["callers"]
        assert line["refused"] == line["wrong_expectations"]
        assert line["written"] == line["n"] - line["refused"]


def test_append_lines_report_the_schema_floor(quick_lines: list[dict[str, Any]]) -> None:
    floored = [x for x in quick_lines if "schema_floor_ratio" in x]
    assert [x["name"] for x in floored] == [
        "append_sequential_strict",
        "append_concurrent_strict",
        "append_concurrent_sustained",
        "append_batch_strict",
    ]
    for line in floored:
        assert len(line["schema_floor_pair_ratios"]) == len(line["pair_ratios"])
        assert line["schema_floor_ratio"] > 0


def test_read_line_also_reports_apsw_raw_fetch(quick_lines: list[dict[str, Any]]) -> None:
    (read,) = [line for line in quick_lines if line["name"] == "read_all_decoded"]
    assert read["apsw_raw_value"] > 0 and read["ratio_vs_apsw_raw"] > 0


def test_only_selects_one_benchmark_and_pairs_sets_the_pair_count() -> None:
    done = run_bench("--quick", "--only", "append_batch_strict", "--pairs", "2")
    assert done.returncode == 0, done.stderr
    (line,) = [json.loads(text) for text in done.stdout.splitlines()]
    assert line["name"] == "append_batch_strict"
    assert len(line["pair_ratios"]) == 2


def test_unknown_benchmark_is_refused_with_one_line() -> None:
    done = run_bench("--quick", "--only", "append_everything")
    assert done.returncode == 2
    assert "append_everything" in done.stderr and "append_sequential_strict" in done.stderr
    assert done.stdout == ""


def test_versus_eventsourcing_prints_three_comparisons() -> None:
    done = run_bench("--quick", "--vs", "eventsourcing", "--pairs", "1")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(text) for text in done.stdout.splitlines()]
    assert [line["name"] for line in lines] == [
        "vs_eventsourcing_single_saves",
        "vs_eventsourcing_saves_of_100",
        "vs_eventsourcing_read_decoded",
    ]
    for line in lines:
        assert line["baseline_name"].startswith("eventsourcing ")
        assert line["value"] > 0 and line["baseline_value"] > 0 and line["ratio"] > 0

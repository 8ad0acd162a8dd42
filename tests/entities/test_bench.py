from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from facta.entities.bench import bench_entities


def test_bench_entities_prints_one_line_per_workload_with_baselines() -> None:
    lines = list(bench_entities(pairs=1, commands=20, transfers=256, clients=8))
    assert [line["name"] for line in lines] == [
        "command_single_entity_strict",
        "transfer_concurrent_strict",
        "transfer_hot",
    ]
    single, concurrent, hot = lines
    assert single["baseline_name"] == "append_sequential_strict" and single["goal"] == 0.7
    assert concurrent["baseline_name"] == "append_concurrent_strict"
    assert concurrent["transfers"] == 256 and {"p50_ms", "p99_ms"} <= set(concurrent)
    # What explains the figures: CPU per operation on both sides, and how retries weigh.
    assert concurrent["cpu_us"] > 0 and concurrent["baseline_cpu_us"] > 0
    assert 0 <= concurrent["stale_read_rate"] <= concurrent["retry_rate"]
    assert concurrent["first_try_p99_ms"] > 0 and 0 <= concurrent["retried_share"] < 1
    assert concurrent["lookups_per_job"] >= 1
    assert {"retry_rate", "abort_rate"} <= set(hot) and "ratio" not in hot
    assert all(len(line["loadavg"]) == 3 for line in lines)


def test_bench_entities_only_runs_the_lines_named() -> None:
    lines = list(
        bench_entities(pairs=1, transfers=128, clients=4, only=["transfer_concurrent_strict"])
    )
    assert [line["name"] for line in lines] == ["transfer_concurrent_strict"]
    assert lines[0]["transfers"] == 128 and lines[0]["ratio"] > 0
    out = subprocess.run(
        [sys.executable, "-m", "facta.entities.cli", "bench", "entities", "--only", "nope"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0 and "unknown benchmark 'nope'" in out.stderr


def test_bench_bank_runs_the_chaos_check_and_reports_one_json_line(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "facta.entities.cli",
            "bench",
            "bank",
            "--minutes",
            "0.03",
            "--clients",
            "2",
            "--workdir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    line = json.loads(out.stdout.strip().splitlines()[-1])
    assert line["name"] == "bank" and line["valid"] is True and line["violations"] == 0
    assert line["ok_transfers"] >= 1 and (tmp_path / "bank.db").exists()

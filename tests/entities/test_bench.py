from __future__ import annotations

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
    assert {"retry_rate", "abort_rate"} <= set(hot) and "ratio" not in hot
    assert all(len(line["loadavg"]) == 3 for line in lines)

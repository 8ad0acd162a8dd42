"""``facta views bench`` runs end to end on a small input and prints every case."""

from __future__ import annotations

import json
from typing import Any

from facta.views.bench import run_bench


def test_the_bench_reports_every_case(tmp_path: Any) -> None:
    records: list[dict[str, Any]] = []
    run_bench(
        records.append,
        copies=2,
        rounds=1,
        limit=1500,
        queries=3,
        workdir=str(tmp_path),
        live_seconds=1.0,
    )
    assert [r["name"] for r in records] == [
        "d2_sql",
        "enriched_sql",
        "view_rebuild",
        "view_rebuild_memory",
        "view_rebuild_enriched",
        "view_query_kpi",
        "view_query_box_sequence",
        "view_query_top10",
        "view_query_heatmap",
        "view_live_latency",
    ]
    rebuild = records[2]
    assert rebuild["events"] == 3000 and rebuild["value"] > 0 and len(rebuild["pairs"]) == 1
    assert "approx_quantile" in records[0]["sql"]
    enriched = records[4]
    assert enriched["value"] > 0 and "ASOF LEFT JOIN" in records[1]["sql"]
    assert records[7]["top10_ratio"] > 0 and records[7]["full_sort_p50_ms"] > 0
    assert records[6]["queries"] == 3
    assert 0 < records[-2]["heatmap_cells"] <= 24 * 7
    live = records[-1]
    # One second at 100 appends of 50 events a second: every append was seen by the observer.
    assert live["appends"] == 100 and live["seen"] == 100 and live["events"] == 5000
    assert 0 <= live["p50_ms"] <= live["value"] <= live["max_ms"] and live["backlog"] >= 50
    json.dumps(records, allow_nan=False)

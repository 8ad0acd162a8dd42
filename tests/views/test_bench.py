"""``facta views bench`` runs end to end on a small input and prints every case."""

from __future__ import annotations

import json
from typing import Any

from facta.views.bench import run_bench


def test_the_bench_reports_every_case(tmp_path: Any) -> None:
    records: list[dict[str, Any]] = []
    run_bench(records.append, copies=2, rounds=1, limit=1500, queries=3, workdir=str(tmp_path))
    assert [r["name"] for r in records] == [
        "d2_sql",
        "view_rebuild",
        "view_rebuild_memory",
        "view_query_kpi",
        "view_query_box_sequence",
        "view_query_top10",
        "view_query_heatmap",
    ]
    rebuild = records[1]
    assert rebuild["events"] == 3000 and rebuild["value"] > 0 and len(rebuild["pairs"]) == 1
    assert "approx_quantile" in records[0]["sql"]
    assert records[5]["top10_ratio"] > 0 and records[5]["full_sort_p50_ms"] > 0
    assert records[4]["queries"] == 3
    assert 0 < records[-1]["heatmap_cells"] <= 24 * 7
    json.dumps(records, allow_nan=False)

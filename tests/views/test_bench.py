"""``facta views bench`` runs end to end on a small input and prints every case."""

from __future__ import annotations

import json
import os
from typing import Any

from facta.views.bench import BENCH_VIEW, _HeldEngine, _rebuild, build_log, run_bench
from facta.views.compile import compile_view
from facta.views.definition import load_definition
from facta.views.engine import EngineSettings, ViewEngine
from facta.views.store import ViewStore, views_path


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


def test_the_memory_case_folds_every_event_into_cells_it_never_writes(tmp_path: Any) -> None:
    log = tmp_path / "bench.db"
    events = build_log(log, 1, limit=1200)
    view = compile_view(load_definition("bench", BENCH_VIEW))
    assert _rebuild(log, view, memory=True) == events == 1200
    assert not os.path.exists(views_path(log))  # the memory case opened no views file
    # Batches of 500 and a commit after each: a held engine ends with the same cells (counts
    # and moments; KLL sketches are randomised) as one that commits, and its store stays empty.
    settings = EngineSettings(batch_size=500, commit_every_events=500)
    held_store, kept_store = ViewStore(":memory:"), ViewStore(":memory:")
    with _HeldEngine(log, view, held_store, settings).open() as held:
        held.run()
        assert held.committed == held.checkpoint == held.head()
        assert list(held_store.cells("bench", held.generation)) == []
        held_values = _exact_values(held)
    with ViewEngine(log, view, kept_store, settings).open() as kept:
        kept.run()
        assert len(list(kept_store.cells("bench", kept.generation))) == len(kept.cells)
        assert _exact_values(kept) == held_values and len(held_values) > 50


def _exact_values(engine: ViewEngine) -> dict[Any, tuple[Any, ...]]:
    """Each bucket cell's count, mean and covariance results."""
    measures = engine.view.measures
    exact = [i for i, m in enumerate(measures) if m.kind in ("count", "mean", "covariance")]
    return {
        key: tuple(measures[i].finalize(cell.states[i]) for i in exact)
        for key, cell in engine.cells.items()
    }

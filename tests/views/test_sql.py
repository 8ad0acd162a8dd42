"""``facta sql``: DuckDB over views with mergeable columns, in a sandbox."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from facta.views import (
    ViewEngine,
    ViewStore,
    compile_view,
    load_definition,
    open_snapshot,
    views_path,
)
from facta.views.shapes import groups
from facta.views.sql import SqlRefused, run_sql
from tests.views.conftest import flights_view


@pytest.fixture
def store(flights_log: Path) -> ViewStore:
    table = {k: v for k, v in flights_view("delays").items() if k != "name"}
    view = compile_view(load_definition("delays", table))
    opened = ViewStore(views_path(flights_log))
    with ViewEngine(flights_log, view, opened).open() as engine:
        engine.run()
    return opened


def test_coarser_groups_merge_states_not_averages(
    store: ViewStore, small_flights: list[dict[str, Any]]
) -> None:
    result = run_sql(
        store,
        "SELECT origin, sum(flights) AS flights, "
        "sum(delay__n * delay__mean) / sum(delay__n) AS mean, "
        "kll_merge_quantile(list(delay_q__kll), 0.5) AS median, "
        "hll_merge(list(planes__hll)) AS planes, "
        "fi_merge_top(list(dests__fi), 2) AS top "
        "FROM delays GROUP BY origin ORDER BY origin",
    ).to_pylist()
    exact = groups(open_snapshot(store, "delays"), group_by=["origin"]).to_pylist()
    assert [r["origin"] for r in result] == ["EWR", "JFK", "LGA"]
    for mine, theirs in zip(result, exact, strict=True):
        assert mine["flights"] == theirs["flights"]
        assert abs(mine["mean"] - theirs["delay"]) < 1e-9 * abs(theirs["delay"])
        delays = [
            r["dep_delay"]
            for r in small_flights
            if r["origin"] == mine["origin"] and r["dep_delay"] is not None
        ]
        # KLL compaction is randomised: check the median in rank space, not by equality.
        ordered = np.sort(delays)
        below = np.searchsorted(ordered, mine["median"], "left") / ordered.size
        at_or_below = np.searchsorted(ordered, mine["median"], "right") / ordered.size
        assert below - 0.027 <= 0.5 <= at_or_below + 0.027
        # The view's all-time roll-up and the SQL union of daily sketches are two estimates.
        assert abs(mine["planes"] - theirs["planes"]) <= 0.03 * theirs["planes"]
        assert '"item"' in mine["top"]


@pytest.mark.parametrize(
    ("statement", "reason"),
    [
        ("SELECT * FROM read_csv('/etc/passwd')", "disabled"),
        ("SELECT 1; SELECT 2", "one SELECT"),
        ("COPY delays TO '/tmp/x.csv'", "one SELECT"),
        ("SET threads = 8", "one SELECT"),
        ("SELECT * FROM range(100000)", "more than 10000 rows"),
    ],
)
def test_the_sandbox_refuses(store: ViewStore, statement: str, reason: str) -> None:
    with pytest.raises(SqlRefused) as caught:
        run_sql(store, statement)
    assert reason in str(caught.value)


def test_a_slow_query_is_interrupted(store: ViewStore) -> None:
    from facta.views.sql import SqlTimeout

    with pytest.raises(SqlTimeout):
        run_sql(store, "SELECT count(*) FROM range(1000000000) a, range(1000) b", time_limit=0.3)

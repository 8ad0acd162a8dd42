"""The demo dashboard in a real browser: every panel kind draws exactly what the view query
answers, a new flight shows up live, a panel added on the page is saved into facta.toml."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Page, expect
from typer.testing import CliRunner

from facta.dashboards import PANEL_KINDS
from facta.views.cli import views_app
from tests.browser.conftest import CHROMIUM, Demo, ForeignRequests, open_dashboard

if not CHROMIUM.exists():
    pytest.skip(
        f"browser tests need Debian's Chromium at {CHROMIUM} (apt-get install chromium; "
        ".ci/run installs it)",
        allow_module_level=True,
    )

DEMO_PANELS = 9


def _client(demo_server: Demo) -> httpx.Client:
    return demo_server.server.client(demo_server.reader)


def _dashboard(demo_server: Demo) -> dict[str, Any]:
    with _client(demo_server) as client:
        answer = client.get("/dashboards")
        assert answer.status_code == 200, answer.text
    (dashboard,) = answer.json()["dashboards"]
    return dict(dashboard)


def _panels(page: Page) -> dict[str, dict[str, Any]]:
    return dict(page.evaluate("() => window.__facta.panels"))


def _by_key(rows: list[dict[str, Any]], key: list[str]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda row: json.dumps([row[k] for k in key]))


def _label(row: dict[str, Any], names: list[str]) -> str:
    return " · ".join(str(row[n]) for n in names) if names else "all"


def _sort_key(value: Any) -> tuple[bool, Any]:
    return (value is None, value if value is not None else 0)


def expected_plot(panel: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """What the page must have drawn from ``rows``, derived here independently of its code."""
    kind, measure = panel["kind"], panel["measure"]
    names = panel["group_by"] or []
    five = ["whisker_low", "q1", "median", "q3", "whisker_high"]
    if kind == "kpi":
        return {"value": rows[0][measure]}
    if kind == "bar":
        ranked = sorted(rows, key=lambda r: _sort_key(r[measure]), reverse=True)[: panel["k"]]
        return {
            "labels": [_label(r, names) for r in ranked],
            "values": [r[measure] for r in ranked],
        }
    if kind == "line":
        ordered = sorted(rows, key=lambda r: [_sort_key(r[n]) for n in names])
        return {
            "labels": [_label(r, names) for r in ordered],
            "values": [r[measure] for r in ordered],
        }
    if kind == "series":
        ordered = sorted(rows, key=lambda r: str(r["bucket"]))
        return {"series": [{"name": "all", "data": [[r["bucket"], r[measure]] for r in ordered]}]}
    if kind == "box":
        ordered = sorted((r for r in rows if r["n"] > 0), key=lambda r: _label(r, names))
        return {
            "labels": [_label(r, names) for r in ordered],
            "boxes": [[r[f] for f in five] for r in ordered],
        }
    if kind == "box_sequence":
        ordered = sorted((r for r in rows if r["n"] > 0), key=lambda r: str(r["bucket"]))
        return {
            "labels": [str(r["bucket"])[:10] for r in ordered],
            "boxes": [[r[f] for f in five] for r in ordered],
            "buckets": [r["bucket"] for r in ordered],
        }
    if kind == "heatmap":
        xs = sorted({r[panel["x"]] for r in rows})
        ys = sorted({r[panel["y"]] for r in rows})
        cells = [[xs.index(r[panel["x"]]), ys.index(r[panel["y"]]), r[measure]] for r in rows]
        return {"x": xs, "y": ys, "cells": sorted(cells)}
    assert kind == "ellipse"
    ordered = sorted((r for r in rows if r["mean_x"] is not None), key=lambda r: _label(r, names))
    return {
        "groups": [
            {
                "label": _label(r, names),
                "mean": [r["mean_x"], r["mean_y"]],
                "angle": r["angle_degrees"],
                "r1": [r["r1_major"], r["r1_minor"]],
                "r2": [r["r2_major"], r["r2_minor"]],
            }
            for r in ordered
        ]
    }


# Box fields estimated from a KLL sketch: merging sketches flips coins, so two queries at one
# position may differ within the sketch's error. Everything else must match exactly.
SKETCHED = {"q1", "median", "q3", "whisker_low", "whisker_high", "beyond_low", "beyond_high"}


def _sketched(name: str) -> bool:
    return name in SKETCHED or re.fullmatch(r"[a-z_]+_p[0-9]+(_[0-9]+)?", name) is not None


def assert_same_rows(
    drawn: list[dict[str, Any]], answered: list[dict[str, Any]], panel: str
) -> None:
    assert len(drawn) == len(answered), panel
    for mine, theirs in zip(drawn, answered, strict=True):
        assert mine.keys() == theirs.keys(), panel
        exact = {k: v for k, v in mine.items() if not _sketched(k)}
        assert exact == {k: theirs[k] for k in exact}, panel
        for name in filter(_sketched, mine):
            a, b = mine[name], theirs[name]
            if a is None or b is None:
                assert a == b, (panel, name)
                continue
            if name.startswith("beyond"):
                room = 0.05 * theirs["n"]  # counts beyond the whiskers: within 5 % of n
            elif "max" in theirs and theirs["max"] is not None:
                # Quartiles within 3 % of the range; a whisker is the most extreme value the
                # sketch kept inside the fence, so it moves more: within 10 %.
                share = 0.10 if name.startswith("whisker") else 0.03
                room = share * (theirs["max"] - theirs["min"])
            else:
                room = 0.05 * max(abs(a), abs(b)) + 1.0  # a KPI's quantile: no range to hand
            assert abs(a - b) <= room + 1e-9, (panel, name, a, b)


def _pixel_spread(path: Path) -> float:
    pixels = np.asarray(Image.open(path).convert("L"), dtype=np.float64)
    return float(pixels.std())


def test_every_panel_kind_draws_what_the_view_query_answers(
    page: Page, demo_server: Demo, artefacts: Path
) -> None:
    dashboard = _dashboard(demo_server)
    definitions = {p["id"]: p for p in dashboard["panels"]}
    assert sorted({p["kind"] for p in definitions.values()}) == sorted(PANEL_KINDS)
    open_dashboard(page, demo_server, demo_server.reader)
    shown = _panels(page)
    assert sorted(shown) == sorted(definitions)
    indicator = page.locator("#indicator-text").inner_text()
    position = page.evaluate("() => window.__facta.position")
    assert f"log position {position:,}" in indicator and "lag" in indicator
    checked = set()
    with _client(demo_server) as client:
        for panel_id, drawn in shown.items():
            panel = definitions[panel_id]
            assert drawn["mode"] == "live", f"{panel_id} is not fed by the live route"
            assert drawn["query"].startswith(f"/views/{panel['view']}/{panel['shape']}?")
            answer = client.get(f"{drawn['query']}&min_position={drawn['position']}")
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["position"] == drawn["position"]
            rows = body["rows"]
            assert rows, f"{panel_id}: the query answered no rows"
            page_rows = _by_key(drawn["rows"], body["key"])
            assert_same_rows(page_rows, _by_key(rows, body["key"]), panel_id)
            plotted = drawn["plotted"]
            if panel["kind"] == "heatmap":
                plotted = {**plotted, "cells": sorted(plotted["cells"])}
            assert plotted == expected_plot(panel, page_rows), panel_id
            if panel["kind"] in ("box", "box_sequence"):
                assert drawn["series"][0] == plotted["boxes"]
            checked.add(panel["kind"])
    assert sorted(checked) == sorted(PANEL_KINDS)
    for kind in PANEL_KINDS:
        card = page.locator(f'section.panel[data-kind="{kind}"]').first
        card.scroll_into_view_if_needed()
        path = artefacts / f"{kind}.png"
        card.screenshot(path=str(path))
        # A blank card (white, a title and a footer) has a small spread; a drawn chart more.
        assert _pixel_spread(path) > 20, f"the {kind} panel looks blank ({path})"
    page.screenshot(path=str(artefacts / "dashboard.png"), full_page=True)


def test_a_new_carrier_shows_up_on_the_page_within_two_seconds(
    page: Page, demo_server: Demo
) -> None:
    open_dashboard(page, demo_server, demo_server.reader)
    carriers = _panels(page)["delay_by_carrier"]["plotted"]["labels"]
    assert "ZZ" not in carriers and len(carriers) >= 10
    flight = {
        "year": 2013, "month": 1, "day": 14, "dep_delay": 999, "arr_delay": 990,
        "carrier": "ZZ", "flight": 1, "tailnum": "N999ZZ", "origin": "JFK", "dest": "LAX",
        "time_hour": "2013-01-14T20:00:00Z",
    }  # fmt: skip
    with demo_server.server.client(demo_server.admin) as client:
        started = time.monotonic()
        answer = client.post(
            "/log/streams/flight-ZZ1-2013-1-14",
            json={"events": [{"type": "FlightDeparted", "data": flight}]},
        )
        assert answer.status_code in (200, 201), answer.text
    page.wait_for_function(
        "() => window.__facta.panels.delay_by_carrier.plotted.labels.includes('ZZ')",
        timeout=2_000,
    )
    seen_after = time.monotonic() - started
    drawn = _panels(page)["delay_by_carrier"]["plotted"]
    assert drawn["boxes"][drawn["labels"].index("ZZ")] == [999.0] * 5
    assert seen_after < 2.0


def test_a_panel_added_on_the_page_is_saved_and_plan_has_nothing_to_do(
    page: Page, demo_server: Demo
) -> None:
    assert open_dashboard(page, demo_server, demo_server.admin) == DEMO_PANELS
    page.get_by_role("button", name="+ Add panel").click()
    dialog = page.locator("#panel-dialog")
    dialog.locator("input[name=title]").fill("Delay by origin airport")
    dialog.locator("select[name=kind]").select_option("box")
    dialog.locator("select[name=view]").select_option("flights")
    dialog.locator("select[name=measure]").select_option("delay_q")
    dialog.locator("input[name=group_by][value=origin]").check()
    dialog.locator("input[name=range]").fill("14d")
    dialog.get_by_role("button", name="Add and save").click()
    expect(dialog).to_be_hidden()
    new = page.locator('section.panel[data-panel="delay_by_origin_airport"]')
    expect(new).to_be_visible()
    page.reload()
    assert open_dashboard(page, demo_server, demo_server.admin) == DEMO_PANELS + 1
    drawn = _panels(page)["delay_by_origin_airport"]["plotted"]
    assert drawn["labels"] == ["EWR", "JFK", "LGA"]
    text = demo_server.project.read_text()
    assert text.startswith("# The flights demo project")
    assert 'id = "delay_by_origin_airport"' in text and 'group_by = ["origin"]' in text
    result = CliRunner().invoke(
        views_app,
        ["plan", "--log", str(demo_server.server.log_path), "--project", str(demo_server.project)],
    )
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 5 and all(line.startswith("keep") for line in lines), lines


def test_a_request_to_another_host_is_caught(
    page: Page, demo_server: Demo, foreign: ForeignRequests
) -> None:
    """The negative control of the host guard every test runs under."""
    open_dashboard(page, demo_server, demo_server.reader)
    outcome = page.evaluate(
        "() => fetch('http://example.invalid/x').then(() => 'fetched', e => 'refused: ' + e)"
    )
    assert outcome.startswith("refused: TypeError")
    assert foreign.urls == ["http://example.invalid/x"]
    foreign.urls.clear()  # caught as expected: the fixture's own check must not fail the test


def test_saving_needs_the_admin_scope(page: Page, demo_server: Demo) -> None:
    open_dashboard(page, demo_server, demo_server.reader)
    page.get_by_role("button", name="+ Add panel").click()
    dialog = page.locator("#panel-dialog")
    dialog.locator("input[name=title]").fill("Not allowed")
    dialog.get_by_role("button", name="Add and save").click()
    expect(dialog.locator("#panel-error")).to_contain_text("admin scope")


def test_filtering_by_a_dimension_value_and_zooming_into_a_time_range(
    page: Page, demo_server: Demo
) -> None:
    open_dashboard(page, demo_server, demo_server.reader)
    page.locator("#filter-dimension").select_option("carrier")
    expect(page.locator("#filter-value option[value=UA]")).to_have_count(1)
    page.locator("#filter-value").select_option("UA")
    page.get_by_role("button", name="Add filter").click()
    page.wait_for_function(
        "() => JSON.stringify(window.__facta.panels.delay_by_carrier.plotted.labels) === "
        "'[\"UA\"]'",
        timeout=10_000,
    )
    # Each panel re-asks its own query when the filter changes: wait for the ellipse panel too.
    page.wait_for_function(
        "() => { const p = window.__facta.panels.delay_ellipses;"
        " return p.query.includes('where=carrier%3AUA')"
        " && JSON.stringify(p.plotted.groups.map((g) => g.label)) === '[\"UA\"]'; }",
        timeout=10_000,
    )
    shown = _panels(page)
    assert "where=carrier%3AUA" in shown["delay_ellipses"]["query"]
    assert "where=" not in shown["hour_weekday"]["query"]  # its view has no carrier
    assert [g["label"] for g in shown["delay_ellipses"]["plotted"]["groups"]] == ["UA"]

    page.get_by_role("button", name="carrier = UA ×").click()
    page.locator("#zoom-from").fill("2013-01-10T00:00")
    page.locator("#zoom-to").fill("2013-01-12T00:00")
    page.get_by_role("button", name="Zoom", exact=True).click()
    page.wait_for_function(
        "() => window.__facta.panels.flights_per_hour.query.includes('to=')"
        " && window.__facta.panels.delay_by_carrier.plotted.labels.length > 1",
        timeout=10_000,
    )
    low, high = page.evaluate(
        "() => [Date.parse('2013-01-10T00:00') / 1000, Date.parse('2013-01-12T00:00') / 1000]"
    )
    shown = _panels(page)
    (series,) = shown["flights_per_hour"]["plotted"]["series"]
    hours = [point[0] for point in series["data"]]
    assert len(hours) == 48  # two days of hourly buckets, each one drawn
    assert f"from={int(low)}" in shown["flights_7d"]["query"]
    with _client(demo_server) as client:
        kpi = client.get(shown["flights_7d"]["query"]).json()["rows"][0]["flights"]
    assert shown["flights_7d"]["plotted"]["value"] == kpi and 0 < kpi < 5000
    assert high - low == 2 * 86400

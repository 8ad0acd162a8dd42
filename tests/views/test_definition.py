"""Definitions load from TOML or Python; bad ones are refused naming view, field and problem."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from facta.views.compile import compile_view
from facta.views.definition import DefinitionError, load_definition, load_views

BASE: dict[str, Any] = {
    "source": {"types": ["FlightDeparted"]},
    "fields": {
        "carrier": "string",
        "origin": "string",
        "dep_delay": "double",
        "arr_delay": "double",
        "distance": "bigint",
        "time_hour": "string",
    },
    "dimensions": ["carrier"],
    "bucket": {"field": "time_hour", "width": "1d", "timezone": "America/New_York"},
    "measures": {"flights": "count", "delay": "mean(dep_delay)"},
}


def definition(**changes: Any) -> dict[str, Any]:
    return {**BASE, **changes}


def refused(table: dict[str, Any]) -> DefinitionError:
    with pytest.raises(DefinitionError) as caught:
        compile_view(load_definition("delays", table))
    assert caught.value.view == "delays"
    return caught.value


def test_a_view_loads_from_facta_toml(tmp_path: Path) -> None:
    path = tmp_path / "facta.toml"
    path.write_text(
        """
[views.delays]
description = "Departure delays per carrier and day"
source = { types = ["FlightDeparted"] }
fields = { carrier = "string", dep_delay = "double", arr_delay = "double", time_hour = "string" }
filter = "dep_delay IS NOT NULL"
extract = { gain = "arr_delay - dep_delay" }
dimensions = ["carrier"]
bucket = { field = "time_hour", width = "1d", timezone = "America/New_York" }

[views.delays.measures]
flights = "count"
delay = { kind = "quantiles", field = "dep_delay", k = 400, q = [0.5, 0.9] }
mean_gain = "mean(gain)"
spread = "covariance(dep_delay, arr_delay)"
carriers = "top_k(carrier, k=5)"
"""
    )
    [view] = load_views(path)
    compiled = compile_view(view)
    assert compiled.extract_sql == {"gain": "(arr_delay - dep_delay)"}
    assert compiled.kinds["gain"] == "float"
    assert [m.kind for m in compiled.measures] == [
        "count",
        "quantiles",
        "mean",
        "covariance",
        "top_k",
    ]
    assert compiled.measures[1].params["k"] == 400
    assert compiled.measures[4].params["k"] == 5
    assert len(compiled.definition_hash) == 64


def test_the_hash_ignores_spelling_and_description_but_not_meaning() -> None:
    def digest(**changes: Any) -> str:
        return compile_view(load_definition("delays", definition(**changes))).definition_hash

    plain = digest(filter="dep_delay > 0")
    assert digest(filter="dep_delay>0") == plain
    assert digest(filter="dep_delay > 0", description="words") == plain
    assert digest(filter="dep_delay > 1") != plain
    changed_k = {**BASE["measures"], "q": "quantiles(dep_delay, k=100)"}
    default_k = {**BASE["measures"], "q": "quantiles(dep_delay)"}
    explicit_k = {**BASE["measures"], "q": "quantiles(dep_delay, k=200)"}
    assert digest(measures=default_k) == digest(measures=explicit_k)
    assert digest(measures=changed_k) != digest(measures=default_k)


@pytest.mark.parametrize(
    ("changes", "field", "problem"),
    [
        ({"dimensions": ["airline"]}, "dimensions[0]", "unknown field 'airline'"),
        ({"filter": "dep_delay +"}, "filter", "invalid expression"),
        ({"filter": "dep_delay"}, "filter", "must be BOOLEAN, found DOUBLE"),
        ({"filter": "nosuch > 1"}, "filter", "does not bind"),
        ({"extract": {"r": "random()"}}, "extract.r", "random() which is non-deterministic"),
        ({"extract": {"t": "hour(now())"}}, "extract.t", "now()"),
        ({"extract": {"f": "getenv('HOME')"}}, "extract.f", "getenv()"),
        ({"extract": {"s": "(SELECT 1)"}}, "extract.s", "subquery"),
        ({"extract": {"a": "sum(dep_delay)"}}, "extract.a", "sum()"),
        ({"extract": {"x": "1 FROM events"}}, "extract.x", "one scalar expression"),
        ({"measures": {"m": "mean(carrier)"}}, "measures.m", "needs a numeric field"),
        ({"measures": {"m": "mean(nosuch)"}}, "measures.m", "unknown field 'nosuch'"),
        ({"bucket": {"field": "dep_delay", "width": "1d"}}, "bucket.field", "iso times"),
    ],
)
def test_bad_definitions_are_refused_naming_the_field(
    changes: dict[str, Any], field: str, problem: str
) -> None:
    error = refused(definition(**changes))
    assert error.field == field
    assert problem.replace("() which", "(), which") in error.problem


@pytest.mark.parametrize(
    ("changes", "field", "problem"),
    [
        ({"measures": {"m": "median(dep_delay)"}}, "measures.m.kind", "unknown measure kind"),
        ({"measures": {"m": "covariance(dep_delay)"}}, "measures.m", "takes 2 field(s)"),
        ({"measures": {"m": "mean(dep_delay, k=3)"}}, "measures.m", "takes no parameter k"),
        ({"bucket": {"field": "time_hour", "width": "2d"}}, "bucket.width", "'1h'"),
        (
            {"bucket": {"field": "time_hour", "width": "1d", "timezone": "Mars/Olympus"}},
            "bucket.timezone",
            "unknown IANA time zone",
        ),
        ({"fields": {"x": "decimal"}}, "fields.x", "Input should be"),
        ({"source": {}}, "source", "needs event types"),
        ({"measures": {}}, "definition", "at least one measure"),
    ],
)
def test_malformed_definitions_are_refused_by_the_model(
    changes: dict[str, Any], field: str, problem: str
) -> None:
    with pytest.raises(DefinitionError) as caught:
        load_definition("delays", definition(**changes))
    assert caught.value.view == "delays"
    assert caught.value.field == field
    assert problem in caught.value.problem


def test_the_documented_example_compiles(tmp_path: Path) -> None:
    text = (Path(__file__).parents[2] / "docs" / "views.md").read_text()
    example = text.split("```toml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "facta.toml"
    path.write_text(example)
    [view] = load_views(path)
    compiled = compile_view(view)
    assert compiled.kinds["wx_temp"] == "float" and compiled.kinds["local_hour"] == "int"
    assert [m.name for m in compiled.measures][-1] == "temp"

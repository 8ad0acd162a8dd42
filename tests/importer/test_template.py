from __future__ import annotations

from typing import Any

import pytest

from facta.importer import RowError, StreamTemplate
from facta.log import InvalidInput

FLIGHT = "flight-{carrier}{flight}-{year}-{month}-{day}"


def test_template_builds_the_stream_name_from_columns() -> None:
    template = StreamTemplate.parse(FLIGHT)
    row = {"carrier": "UA", "flight": 1545, "year": 2013, "month": 1, "day": 1, "x": None}
    assert template.columns == ("carrier", "flight", "year", "month", "day")
    assert template.render(row) == "flight-UA1545-2013-1-1"
    assert template.compile()(row) == "flight-UA1545-2013-1-1"


def test_compiled_and_careful_rendering_agree_on_every_kind_of_value() -> None:
    template = StreamTemplate.parse("s-{a}-{{literal}}")
    fast = template.compile()
    for value, expected in [
        ("x", "s-x-{literal}"),
        (7, "s-7-{literal}"),
        (True, "s-true-{literal}"),
    ]:
        assert template.render({"a": value}) == fast({"a": value}) == expected
    assert fast({"a": 1.5}) == "s-1.5-{literal}"
    cases: list[tuple[dict[str, Any], str]] = [
        ({"a": None}, "column 'a' is null"),
        ({"a": ""}, "column 'a' is empty"),
        ({}, "column 'a' is missing"),
        ({"a": [1]}, "column 'a' holds a list"),
    ]
    for row, reason in cases:
        with pytest.raises(RowError, match=reason):
            fast(row)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("flight-{carrier", "not valid"),
        ("flight-{}", "expected fields of the form"),
        ("flight-{carrier:>5}", "expected fields of the form"),
        ("flight-{carrier!r}", "expected fields of the form"),
        ("all-in-one", "names no column"),
    ],
)
def test_bad_templates_are_refused(text: str, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason):
        StreamTemplate.parse(text)


def test_a_template_naming_a_missing_column_is_refused_naming_it() -> None:
    template = StreamTemplate.parse(FLIGHT)
    with pytest.raises(InvalidInput) as caught:
        template.check_columns(["carrier", "flight", "year", "month"])
    assert "'day'" in str(caught.value) and "carrier, flight, year, month" in str(caught.value)

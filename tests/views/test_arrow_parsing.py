"""Pages parsed by Arrow's JSON reader evaluate exactly as the strict SQL evaluates them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from facta.log import NewEvent, SqliteLog
from facta.views import compile_view, load_definition
from facta.views.arrow_parsing import ArrowFieldParser
from facta.views.compile import CompiledView
from facta.views.pipeline import Evaluated, Pipeline
from facta.views.source import LogReader

FIELDS = {"carrier": "string", "delay": "double", "seats": "bigint", "late": "boolean"}


def _view(name: str, **changes: Any) -> CompiledView:
    table: dict[str, Any] = {
        "source": {"types": ["Flew"]},
        "fields": {**FIELDS, "at": "string"},
        "dimensions": ["carrier", "late"],
        "bucket": {"field": "at", "width": "1d", "timezone": "Europe/Berlin"},
        "measures": {
            "n": "count",
            "d": "mean(delay)",
            "s": "sum(seats)",
            "q": "quantiles(delay)",
            "streams": "distinct(_stream)",
        },
    }
    table.update(changes)
    table = {key: value for key, value in table.items() if value is not None}
    return compile_view(load_definition(name, table))


# Without expressions (typed rows straight from Arrow), with and without a bucket, and with a
# filter and an extracted field (the typed rows go through DuckDB's query).
VIEWS = [
    _view("plain"),
    _view("unbucketed", bucket=None),
    _view(
        "expressions",
        filter="seats IS NULL OR seats > -1000",
        extract={"spread": "delay * 2"},
        measures={"n": "count", "spread_mean": "mean(spread)", "s": "sum(seats)"},
    ),
]

_anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=4),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.sampled_from(["delay", "x"]), st.integers(), max_size=2),
)
_values = {
    "carrier": st.one_of(st.sampled_from(["UA", "B6", "é", ""]), st.text(max_size=3)),
    "delay": st.one_of(
        st.integers(-(2**60), 2**60), st.floats(allow_nan=False, allow_infinity=False)
    ),
    "seats": st.integers(-(2**63), 2**63 - 1),
    "late": st.booleans(),
    "at": st.sampled_from(
        ["2013-03-31T00:30:00Z", "2013-10-27T01:30:00+02:00", "2013-01-01 10:00Z", "soon"]
    ),
}


# Documents with one value of another kind than its field's.
_WRONG: list[dict[str, Any]] = [
    {"carrier": 12, "at": "2013-03-31T00:30:00Z"},
    {"delay": "12"},
    {"delay": True, "carrier": "UA"},
    {"seats": 1.5},
    {"seats": 2**63},
    {"late": 1},
    {"at": 5},
    {"carrier": ["UA"]},
]
_one_wrong = st.sampled_from(_WRONG)


@st.composite
def _documents(draw: st.DrawFn, wrong: bool) -> dict[str, Any]:
    """A document; with ``wrong``, any field may hold a value of another kind."""
    document: dict[str, Any] = {}
    choices = ["value", "value", "value", "null", "missing"] + (["other"] if wrong else [])
    for name, values in _values.items():
        choice = draw(st.sampled_from(choices))
        if choice == "value":
            document[name] = draw(values.filter(lambda v: v == v))
        elif choice == "null":
            document[name] = None
        elif choice == "other":
            document[name] = draw(_anything)
    if draw(st.booleans()):
        document["nested"] = {"delay": "not this one", "list": [1, {"carrier": 7}]}
    return document


def _page(path: Path, log: SqliteLog, view: CompiledView, documents: list[Any]) -> pa.Table:
    after = log.head_sync()
    for index, document in enumerate(documents):
        log.append_sync(f"s-{index % 3}", [NewEvent(type="Flew", data=document)])
    reader = LogReader(str(path), view.definition.source, view.log_columns())
    try:
        page = reader.read(after, 50_000).events
    finally:
        reader.close()
    assert page.num_rows == len(documents)
    return page


def _differences(found: Evaluated, strict: Evaluated) -> list[str]:
    """What differs between two evaluations of one page (nothing, when they agree)."""
    differences = []
    if found.rows.column_names != strict.rows.column_names:
        differences.append(f"columns {found.rows.column_names} != {strict.rows.column_names}")
    elif found.rows.to_pylist() != strict.rows.to_pylist():
        differences.append("rows")
    rejected = {k: v.tolist() for k, v in found.rejected_values.items() if v.size}
    strict_rejected = {k: v.tolist() for k, v in strict.rejected_values.items() if v.size}
    if rejected != strict_rejected:
        differences.append(f"rejected values {rejected} != {strict_rejected}")
    if found.rejected_events.tolist() != strict.rejected_events.tolist():
        differences.append("rejected events")
    return differences


def _evaluate(view: CompiledView, page: pa.Table, pipeline: Pipeline) -> Evaluated:
    try:
        return pipeline.evaluate(page)
    finally:
        pipeline.close()


BY_ARROW: list[int] = []
BY_SQL: list[int] = []


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data(), which=st.integers(0, len(VIEWS) - 1), wrong=st.booleans())
def test_arrow_and_strict_sql_evaluate_a_page_alike(
    shared_log: tuple[Path, SqliteLog], data: st.DataObject, which: int, wrong: bool
) -> None:
    path, log = shared_log
    view = VIEWS[which]
    documents = data.draw(st.lists(_documents(wrong), min_size=1, max_size=10))
    if wrong:  # at least one value of another kind: the page must take the strict SQL
        documents.insert(data.draw(st.integers(0, len(documents))), data.draw(_one_wrong))
    page = _page(path, log, view, documents)
    fast = Pipeline(view, str(path))
    found = _evaluate(view, page, fast)
    strict = _evaluate(view, page, Pipeline(view, str(path), arrow_parsing=False))
    assert _differences(found, strict) == []
    # A page with a value of another kind is refused by Arrow; any other page is not.
    assert (fast.pages_parsed_by_sql > 0) == wrong
    assert (fast.pages_parsed_by_arrow > 0) == (not wrong)
    (BY_SQL if wrong else BY_ARROW).append(len(documents))


def test_the_property_took_both_ways() -> None:
    # Runs after the property above (same module, file order). Pages with a wrong value must
    # have gone to the strict SQL, and pages without one through Arrow. Half the examples
    # hold a wrong value; a run compared 51 and 9 when that was left to chance, so the floor
    # only asserts that both ways were compared several times.
    assert len(BY_ARROW) >= 5 and len(BY_SQL) >= 5, (len(BY_ARROW), len(BY_SQL))


class _Lenient(ArrowFieldParser):
    """Broken on purpose: a page Arrow refuses gets nulls for every field, as a reader that
    turned wrong kinds into NULL would — the silent loss strict parsing exists to prevent."""

    def parse(self, data: pa.ChunkedArray | pa.Array) -> list[pa.Array] | None:
        found = super().parse(data)
        if found is not None:
            return found
        types = [pa.string(), pa.float64(), pa.int64(), pa.bool_(), pa.string()]
        return [pa.nulls(len(data), kind) for kind in types]


def test_a_lenient_arrow_reader_is_caught(shared_log: tuple[Path, SqliteLog]) -> None:
    path, log = shared_log
    view = VIEWS[0]
    documents = [
        {"carrier": "UA", "delay": 3.5, "at": "2013-03-31T00:30:00Z"},
        {"carrier": "UA", "delay": "12", "at": "2013-03-31T00:30:00Z"},
    ]
    page = _page(path, log, view, documents)
    strict = _evaluate(view, page, Pipeline(view, str(path), arrow_parsing=False))
    positions = page.column("position").to_pylist()
    assert strict.rejected_values["delay"].tolist() == [positions[1]]

    honest = Pipeline(view, str(path))
    assert _differences(_evaluate(view, page, honest), strict) == []
    assert (honest.pages_parsed_by_arrow, honest.pages_parsed_by_sql) == (0, 1)

    lenient = Pipeline(view, str(path))
    lenient._arrow = _Lenient(view.definition.fields)
    differences = _differences(_evaluate(view, page, lenient), strict)
    assert "rows" in differences
    assert f"rejected values {{}} != {{'delay': [{positions[1]}]}}" in differences


def test_a_clean_page_is_parsed_by_arrow_only(shared_log: tuple[Path, SqliteLog]) -> None:
    path, log = shared_log
    for view in VIEWS:
        documents = [
            {"carrier": "B6", "delay": -4, "seats": 2**62, "late": True, "at": "2013-01-01 10:00Z"},
            {
                "carrier": None,
                "delay": 1e300,
                "extra": {"delay": "x"},
                "at": "2013-03-31T00:30:00Z",
            },
        ]
        page = _page(path, log, view, documents)
        pipeline = Pipeline(view, str(path))
        found = _evaluate(view, page, pipeline)
        assert (pipeline.pages_parsed_by_arrow, pipeline.pages_parsed_by_sql) == (1, 0)
        strict = _evaluate(view, page, Pipeline(view, str(path), arrow_parsing=False))
        assert _differences(found, strict) == []
        assert found.rows.num_rows == 2


def test_views_with_json_fields_keep_the_strict_sql(shared_log: tuple[Path, SqliteLog]) -> None:
    path, log = shared_log
    view = _view("raw", fields={**FIELDS, "at": "string", "extra": "json"})
    assert not ArrowFieldParser.handles(view.definition.fields)
    with pytest.raises(ValueError, match="raw JSON"):
        ArrowFieldParser(view.definition.fields)
    page = _page(path, log, view, [{"carrier": "UA", "extra": [1, 2], "at": "2013-01-01 10:00Z"}])
    pipeline = Pipeline(view, str(path))
    found = _evaluate(view, page, pipeline)
    assert (pipeline.pages_parsed_by_arrow, pipeline.pages_parsed_by_sql) == (0, 1)
    assert found.rows.num_rows == 1

"""schemathesis over the server's OpenAPI with an admin token: all checks, no 500s.

Every operation gets at least 100 generated examples (fewer only where the schema allows fewer
distinct requests) and must answer at least one of them with a 2xx. The two SSE routes are
left out: their responses never end (tests/server/test_serve_live*.py cover them).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.config import SchemathesisConfig

from tests.server.conftest import Tokens
from tests.server.served_domain import write_domain
from tests.server.server_process import RunningServer, facta_serve
from tests.server.view_project import fill_log, write_project

EXAMPLES = 100


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory, tokens: Tokens) -> Iterator[RunningServer]:
    workdir: Path = tmp_path_factory.mktemp("serve-fuzz")
    project = write_project(workdir)
    fill_log(workdir / "facta.db", 200)
    module = write_domain(workdir)
    args = ["--project", str(project), "--module", module]
    with facta_serve(workdir, tokens.lines, args) as running:
        with running.client(tokens.admin) as admin:
            seeded = admin.post(
                "/log/streams/seeded",
                json={"events": [{"type": "Seeded"}], "key": "checkout-2024-0001"},
            )
            assert seeded.status_code == 200, seeded.text
            ready = admin.get("/views/delays/kpi", params={"min_position": 200, "timeout": 20})
            assert ready.status_code == 200, ready.text
        yield running


def test_every_operation_conforms_answers_2xx_and_never_500(
    fuzzed: RunningServer, tokens: Tokens
) -> None:
    # Schema-valid requests may still name a view, dimension or command that does not exist,
    # or combine parameters a shape does not take: facta answers those 400/422 with a problem.
    accepted = ["2xx", "400", "401", "403", "404", "409", "422", "429"]
    config = SchemathesisConfig.from_dict(
        {"checks": {"positive_data_acceptance": {"expected-statuses": accepted}}}
    )
    loaded = schemathesis.openapi.from_url(f"{fuzzed.url}/openapi.json", config=config)
    api = loaded.exclude(path_regex=r"^/(log/live|live/)")
    headers = {"Authorization": f"Bearer {tokens.admin}"}
    statuses: dict[str, list[int]] = defaultdict(list)
    failures: dict[str, str] = {}
    operations = [result.ok() for result in api.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) >= 15, [op.label for op in operations]
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def run(case: Any) -> None:
            response = case.call(base_url=fuzzed.url, headers=headers, timeout=30)
            statuses[case.operation.label].append(response.status_code)
            assert response.status_code < 500, response.text
            case.validate_response(response, headers=headers)

        try:
            run()
        except Exception as exc:  # collect every operation's failure, then report them all
            failures[operation.label] = f"{type(exc).__name__}: {str(exc)[:2000]}"
    assert failures == {}
    no_success = [
        op.label for op in operations if not any(200 <= s < 300 for s in statuses[op.label])
    ]
    assert no_success == [], {label: sorted(set(statuses[label])) for label in no_success}
    # Operations that take no input have only one distinct request to make.
    document = httpx.get(f"{fuzzed.url}/openapi.json").json()
    takes_input = {
        f"{method.upper()} {path}"
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
        if operation.get("parameters") or operation.get("requestBody")
    }
    few = {
        op.label: len(statuses[op.label])
        for op in operations
        if op.label in takes_input and len(statuses[op.label]) < EXAMPLES
    }
    assert few == {}
    assert len(takes_input & {op.label for op in operations}) >= 9

"""Commands to entities over HTTP, and processors run by the server (``--module``)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.server.conftest import Tokens
from tests.server.served_domain import write_domain
from tests.server.server_process import RunningServer, facta_serve


@pytest.fixture(scope="module")
def bank_server(
    tmp_path_factory: pytest.TempPathFactory, tokens: Tokens
) -> Iterator[RunningServer]:
    workdir = tmp_path_factory.mktemp("serve-bank")
    module = write_domain(workdir)
    with facta_serve(workdir, tokens.lines, ["--module", module]) as running:
        yield running


def test_a_command_is_decided_appended_and_its_state_read(
    bank_server: RunningServer, tokens: Tokens
) -> None:
    with bank_server.client(tokens.writer) as writer:
        first = writer.post(
            "/entities/account/a1/commands", json={"command": "Deposit", "data": {"amount": 50}}
        )
        assert first.status_code == 200, first.text
        assert first.json()["stream"] == "account-a1" and first.json()["version"] == 1
        second = writer.post(
            "/entities/account/a1/commands",
            json={"command": "Withdraw", "data": {"amount": 20}, "command_id": "w-1"},
        )
        assert second.status_code == 200, second.text
        again = writer.post(
            "/entities/account/a1/commands",
            json={"command": "Withdraw", "data": {"amount": 20}, "command_id": "w-1"},
        )
        assert again.status_code == 200 and again.json()["replayed"] is True
        assert again.json()["last_position"] == second.json()["last_position"]
    with bank_server.client(tokens.reader) as reader:
        state = reader.get("/entities/account/a1")
        assert state.json() == {"kind": "account", "id": "a1", "version": 2, "state": 30}
        events = reader.get("/log/streams/account-a1").json()["events"]
        assert [e["type"] for e in events] == ["Deposited", "Withdrawn"]


def test_a_refusal_is_a_409_naming_the_reason(bank_server: RunningServer, tokens: Tokens) -> None:
    with bank_server.client(tokens.writer) as writer:
        refused = writer.post(
            "/entities/account/poor/commands",
            json={"command": "Withdraw", "data": {"amount": 5}, "command_id": "r-1"},
        )
        assert refused.status_code == 409
        body = refused.json()
        assert body["error"] == "refused"
        assert body["refusal"].endswith(":InsufficientFunds") and body["args"] == [0, 5]
        replayed = writer.post(
            "/entities/account/poor/commands",
            json={"command": "Withdraw", "data": {"amount": 5}, "command_id": "r-1"},
        )
        assert replayed.status_code == 409 and replayed.json()["replayed"] is True


@pytest.mark.parametrize(
    ("path", "body", "status", "error"),
    [
        ("/entities/nobody/x/commands", {"command": "Deposit"}, 404, "unknown_kind"),
        ("/entities/account/x/commands", {"command": "Rob"}, 400, "unknown_command"),
        (
            "/entities/account/x/commands",
            {"command": "Deposit", "data": {"amount": "lots"}},
            422,
            "invalid_command",
        ),
        (
            "/entities/account/x/commands",
            {"command": "Deposit", "extra": 1},
            422,
            "invalid_request",
        ),
    ],
)
def test_bad_commands_get_a_4xx_naming_the_problem(
    bank_server: RunningServer,
    tokens: Tokens,
    path: str,
    body: dict[str, object],
    status: int,
    error: str,
) -> None:
    with bank_server.client(tokens.writer) as writer:
        answer = writer.post(path, json=body)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"] == error
    assert answer.json()["detail"]


def test_commands_need_the_append_scope(bank_server: RunningServer, tokens: Tokens) -> None:
    with bank_server.client(tokens.reader) as reader:
        denied = reader.post(
            "/entities/account/a9/commands", json={"command": "Deposit", "data": {"amount": 1}}
        )
    assert denied.status_code == 403 and denied.json()["needed"] == "append"


def test_the_server_runs_the_projects_processors(
    bank_server: RunningServer, tokens: Tokens
) -> None:
    with bank_server.client(tokens.writer) as writer:
        writer.post(
            "/entities/account/p1/commands", json={"command": "Deposit", "data": {"amount": 9}}
        )
        done = writer.post(
            "/entities/account/p1/commands", json={"command": "Withdraw", "data": {"amount": 4}}
        )
        assert done.status_code == 200
    with bank_server.client(tokens.reader) as reader:
        deadline = time.monotonic() + 10
        audited: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            audited = reader.get("/log/streams/audit-log").json()["events"]
            if any(e["data"] == {"stream": "account-p1"} for e in audited):
                break
            time.sleep(0.05)
        assert any(e["data"] == {"stream": "account-p1"} for e in audited)
        [audit] = [p for p in reader.get("/processors").json() if p["name"] == "audit"]
        assert audit["state"] == "ok" and audit["checkpoint"] >= done.json()["last_position"]
        assert audit["running"]["status"] == "running"


def test_without_modules_there_are_no_entities(server: RunningServer, tokens: Tokens) -> None:
    with server.client(tokens.writer) as writer:
        answer = writer.post("/entities/account/a/commands", json={"command": "Deposit"})
    assert answer.status_code == 404 and answer.json()["error"] == "no_entities"

"""Token hash lines: created, parsed, checked; bad lines are refused naming the problem."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from facta.server.tokens import (
    Scope,
    TokenConfigError,
    TokenStore,
    create_token,
    readable_by_others,
)


def test_a_created_token_is_accepted_with_its_scopes_and_nothing_else() -> None:
    alice = create_token("alice", ["read", "append"])
    store = TokenStore.from_text(alice.line, source="test")
    principal = store.authenticate(alice.token)
    assert principal is not None
    assert principal.name == "alice"
    assert principal.scopes == frozenset({Scope.READ, Scope.APPEND})
    assert not principal.allows(Scope.ADMIN)
    assert store.cached(alice.token) == principal
    assert alice.token not in alice.line  # only the hash is stored
    token_id, secret = alice.token.split("_")[1], alice.token.split("_", 2)[2]
    wrong_secret = secret[:-1] + ("B" if secret.endswith("A") else "A")
    assert store.authenticate(f"facta_{token_id}_{wrong_secret}") is None
    assert store.authenticate("facta_000000000000_" + secret) is None
    assert store.authenticate("not a token") is None


def test_admin_implies_every_scope() -> None:
    root = create_token("root", ["admin"])
    principal = TokenStore.from_text(root.line, source="test").authenticate(root.token)
    assert principal is not None
    assert all(principal.allows(scope) for scope in Scope)


def test_tokens_come_from_the_environment_and_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = create_token("a", ["read"]), create_token("b", ["append"])
    monkeypatch.setenv("FACTA_TOKENS", a.line)
    file = tmp_path / "tokens"
    file.write_text(f"# team tokens\n{b.line}\n")
    store = TokenStore.from_environment(file)
    assert len(store) == 2
    assert store.authenticate(b.token) is not None
    with pytest.raises(TokenConfigError, match="does not exist"):
        TokenStore.from_environment(tmp_path / "missing")


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("alice 0123456789ab read", "expected '<name> <id> <scopes>"),
        ("alice 0123456789ab write scrypt:1:1:1:AA:AA", "scopes must be a comma-separated"),
        ("alice xyz read scrypt:1:1:1:AA:AA", "token id must be 12 hex digits"),
        ("alice 0123456789ab read md5:abc", "expected scrypt:n:r:p:salt:hash"),
        ("al/ice 0123456789ab read scrypt:1:1:1:AA:AA", "invalid token name"),
    ],
)
def test_a_bad_line_is_refused_naming_the_problem(line: str, problem: str) -> None:
    with pytest.raises(TokenConfigError, match="test entry 1") as caught:
        TokenStore.from_text(line, source="test")
    assert problem in str(caught.value)


def test_the_token_command_prints_a_token_and_a_line_that_accepts_it() -> None:
    made = subprocess.run(
        [sys.executable, "-m", "facta.server", "token", "bob", "--scopes", "append"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    token = made.stdout.split("shown once, give it to bob): ", 1)[1].split()[0]
    line = made.stdout.split("or .facta/tokens): ", 1)[1].strip()
    principal = TokenStore.from_text(line, source="cli").authenticate(token)
    assert principal is not None
    assert (principal.name, principal.scopes) == ("bob", frozenset({Scope.APPEND}))


def test_the_token_command_refuses_an_unknown_scope() -> None:
    refused = subprocess.run(
        [sys.executable, "-m", "facta.server", "token", "bob", "--scopes", "write"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2
    assert "scopes must be a comma-separated subset of ['admin', 'append', 'read']" in (
        refused.stderr
    )


def test_a_tokens_file_readable_by_others_is_flagged(tmp_path: Path) -> None:
    file = tmp_path / "tokens"
    file.write_text(create_token("c", ["read"]).line)
    file.chmod(0o600)
    assert not readable_by_others(file)
    file.chmod(0o644)
    assert readable_by_others(file)

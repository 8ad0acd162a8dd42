from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from facta.server.tokens import create_token
from tests.server.server_process import RunningServer, facta_serve

MAX_BODY = 64 * 1024
HEARTBEAT = 0.3
MAX_STREAMS = 3
LOCK_TIMEOUT = 0.3


@dataclass(frozen=True)
class Tokens:
    reader: str
    writer: str
    admin: str
    capped: str
    lines: tuple[str, ...]


@pytest.fixture(scope="session")
def tokens() -> Tokens:
    made = {
        "reader": create_token("reader", ["read"]),
        "writer": create_token("writer", ["append"]),
        "admin": create_token("admin", ["admin"]),
        "capped": create_token("capped", ["read"]),
    }
    return Tokens(
        reader=made["reader"].token,
        writer=made["writer"].token,
        admin=made["admin"].token,
        capped=made["capped"].token,
        lines=tuple(t.line for t in made.values()),
    )


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, tokens: Tokens) -> Iterator[RunningServer]:
    """One server for the session: small body limit, fast heartbeat, short lock timeout."""
    workdir: Path = tmp_path_factory.mktemp("serve")
    args = [
        "--max-body-bytes",
        str(MAX_BODY),
        "--sse-heartbeat",
        str(HEARTBEAT),
        "--max-connections-per-token",
        str(MAX_STREAMS),
        "--lock-timeout",
        str(LOCK_TIMEOUT),
    ]
    with facta_serve(workdir, tokens.lines, args) as running:
        yield running

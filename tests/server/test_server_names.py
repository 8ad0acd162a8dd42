"""The public names of ``facta.server`` are deliberate: adding or removing one is a decision."""

from __future__ import annotations

import facta.server


def test_public_names() -> None:
    assert sorted(facta.server.__all__) == [
        "Access",
        "Principal",
        "Scope",
        "ServedKind",
        "ServerConfig",
        "TokenStore",
        "create_app",
        "create_token",
        "requires",
        "run_server",
        "serve_app",
    ]
    for name in facta.server.__all__:
        assert getattr(facta.server, name) is not None

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.console import Facta, Result, run_facta


@pytest.fixture
def facta(log_path: Path) -> Facta:
    """``facta(...)`` runs the console script with ``--log`` set to this test's log file."""

    def call(*args: str, stdin: str | None = None) -> Result:
        return run_facta(*args, stdin=stdin, env={"FACTA_LOG": str(log_path)})

    return call

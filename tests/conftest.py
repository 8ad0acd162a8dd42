from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from facta.log import SqliteLog


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "facta.db"


@pytest.fixture
def log(log_path: Path) -> Iterator[SqliteLog]:
    with SqliteLog(log_path) as opened:
        yield opened

"""Fixtures of the contract suite: every test runs once per backend in ``BACKENDS``."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest

from facta.log import Clock, LogConfig

from .backends import BACKENDS, Backend, ContractLog


class OpenLog(Protocol):
    def __call__(
        self, name: str | None = None, config: LogConfig | None = None, clock: Clock | None = None
    ) -> ContractLog: ...


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> Backend:
    return BACKENDS[request.param]


@pytest.fixture
def open_log(backend: Backend, tmp_path: Path) -> Iterator[OpenLog]:
    """A factory opening a fresh log of the backend under test; every log is closed afterwards."""
    opened: list[ContractLog] = []
    names = itertools.count(1)

    def open_one(
        name: str | None = None, config: LogConfig | None = None, clock: Clock | None = None
    ) -> ContractLog:
        path = tmp_path / f"{name or f'log-{next(names)}'}.db"
        log = backend.open(path, config, clock)
        opened.append(log)
        return log

    yield open_one
    for log in opened:
        log.close()


@pytest.fixture
def log(open_log: OpenLog) -> ContractLog:
    return open_log()

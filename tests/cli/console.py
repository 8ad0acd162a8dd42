"""The real ``facta`` console script, run in a subprocess against real SQLite files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FACTA = Path(sys.executable).with_name("facta")


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str

    def json_lines(self) -> list[Any]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]

    def assert_one_line_error(self, code: int, *fragments: str) -> None:
        """The documented error shape: exit ``code``, one line on stderr, no traceback."""
        assert self.code == code, (self.code, self.stdout, self.stderr)
        lines = self.stderr.splitlines()
        assert len(lines) == 1, self.stderr
        assert lines[0].startswith("facta: error: "), lines[0]
        assert "Traceback" not in self.stderr
        for fragment in fragments:
            assert fragment in lines[0], (fragment, lines[0])


Facta = Callable[..., Result]


def run_facta(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> Result:
    environment = {k: v for k, v in os.environ.items() if k not in ("FACTA_LOG", "FACTA_DEBUG")}
    environment.update(env or {})
    done = subprocess.run(
        [str(FACTA), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=False,
    )
    return Result(done.returncode, done.stdout, done.stderr)

"""A real ``facta serve`` in a subprocess on 127.0.0.1, stopped by its handle."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from facta.server.process import environment, serve_process


@dataclass(frozen=True)
class RunningServer:
    url: str
    port: int
    log_path: Path
    process: subprocess.Popen[bytes]
    stderr_path: Path

    def client(self, token: str | None = None, **kwargs: object) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10.0, **kwargs)  # type: ignore[arg-type]


@contextmanager
def facta_serve(
    workdir: Path, token_lines: Sequence[str], args: Sequence[str] = (), *, port: int = 0
) -> Iterator[RunningServer]:
    """Start ``python -m facta.server`` on a free port; stop it (SIGTERM, then SIGKILL)."""
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "facta.db"
    stdout_path = workdir / "stdout.txt"
    stderr_path = workdir / "stderr.txt"
    env = environment(token_lines, workdir / "no-tokens-file")
    args = ["--log", str(log_path), "--port", str(port), *args]
    with serve_process(args, stdout=stdout_path, stderr=stderr_path, env=env, cwd=workdir) as (
        process,
        url,
    ):
        _wait_until_healthy(url, process, stderr_path)
        yield RunningServer(url, int(url.rsplit(":", 1)[1]), log_path, process, stderr_path)


def _wait_until_healthy(url: str, process: subprocess.Popen[bytes], stderr: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None:
            raise RuntimeError(
                f"facta serve exited with {process.returncode}: {stderr.read_text()}"
            )
        time.sleep(0.05)
    raise RuntimeError(f"facta serve not healthy within 30 s: {stderr.read_text()}")

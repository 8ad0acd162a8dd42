"""``facta serve`` as a child process: started with its output in files, its URL taken from the
line it prints when its socket is bound, stopped by its own PID (SIGTERM, then SIGKILL).

The demo, ``facta bench serve`` and the tests all run the server this way.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Final

SERVING: Final = "facta serving "  # then the URL: what ``facta serve`` prints once it listens


@contextmanager
def serve_process(
    args: Sequence[str],
    *,
    stdout: Path,
    stderr: Path | None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 60.0,
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """Run ``python -m facta.server ARGS``; yield it and its URL once it listens; stop it.

    ``stderr=None`` leaves the server's errors on this process's own stderr."""
    command = [sys.executable, "-m", "facta.server", *args]
    with stdout.open("wb") as out:
        if stderr is None:
            process = subprocess.Popen(command, stdout=out, env=env, cwd=cwd)
        else:
            with stderr.open("wb") as err:
                process = subprocess.Popen(command, stdout=out, stderr=err, env=env, cwd=cwd)
    try:
        yield process, _url(process, stdout, stderr, timeout)
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it has not ended within ``timeout`` seconds."""
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout)


def _url(
    process: subprocess.Popen[bytes], stdout: Path, stderr: Path | None, timeout: float
) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in stdout.read_text().splitlines():
            if line.startswith(SERVING):
                return line.split()[-1]
        if process.poll() is not None:
            raise RuntimeError(f"facta serve exited with {process.returncode}{_tail(stderr)}")
        time.sleep(0.05)
    raise RuntimeError(f"facta serve printed no URL within {timeout:g} s{_tail(stderr)}")


def _tail(stderr: Path | None) -> str:
    return "" if stderr is None else f": {stderr.read_text(errors='replace')[-4000:]}"


def environment(token_lines: Sequence[str], tokens_file: Path | None = None) -> dict[str, str]:
    """This process's environment with the given token hash lines in ``FACTA_TOKENS`` (and,
    if given, ``FACTA_TOKENS_FILE`` pointing at ``tokens_file``)."""
    env = {**os.environ, "FACTA_TOKENS": ";".join(token_lines)}
    if tokens_file is not None:
        env["FACTA_TOKENS_FILE"] = str(tokens_file)
    return env

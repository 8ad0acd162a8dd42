"""The reject file: one JSON line per rejected record, with its line number and the reason.

It is derived from the log (each batch's outcome lists its rejects), so every run rewrites it
from the first batch on: a resumed import never writes a reject twice.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import IO, Any

import msgspec

_encoder = msgspec.json.Encoder()


class RejectFile:
    """Written lazily: the file exists only if the import rejected at least one record."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.written = 0
        self._handle: IO[bytes] | None = None

    def restart(self) -> None:
        """Forget what an earlier run wrote: the log's outcomes are the truth it is rebuilt from."""
        self.close()
        self.written = 0
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def write(self, rejects: list[Any]) -> None:
        if not rejects:
            return
        if self._handle is None:
            self._handle = open(self.path, "ab")  # noqa: SIM115 - kept open across batches
        self._handle.write(b"".join(_encoder.encode(item) + b"\n" for item in rejects))
        self._handle.flush()
        self.written += len(rejects)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

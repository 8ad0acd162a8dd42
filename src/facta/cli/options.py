"""Options every command shares, and how a command opens its log."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import apsw
import typer

from facta.log import InvalidInput, SqliteLog

LogPath = Annotated[
    Path,
    typer.Option(
        "--log",
        envvar="FACTA_LOG",
        help="The log file (SQLite). Default: $FACTA_LOG, else ./facta.db.",
        show_default=False,
    ),
]
DEFAULT_LOG = Path("facta.db")

AsJson = Annotated[bool, typer.Option("--json", help="Print JSON lines instead of a table.")]


def open_log(path: Path, *, create: bool) -> SqliteLog:
    """Open the log at ``path``; a command that only reads refuses to create one."""
    if path.is_dir():
        raise InvalidInput(f"log path {str(path)!r} is a directory, expected a file")
    if not create and not path.is_file():
        raise InvalidInput(
            f"log file {str(path)!r} does not exist (pass --log PATH or set FACTA_LOG)"
        )
    try:
        return SqliteLog(path)
    except apsw.NotADBError:
        raise InvalidInput(f"log file {str(path)!r} is not a SQLite database") from None

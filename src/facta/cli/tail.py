"""``facta tail``: follow the log live, one JSON line per event, until Ctrl-C or SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Annotated

import typer

from facta.cli.options import DEFAULT_LOG, LogPath, open_log
from facta.cli.output import event_dict, json_line, write_lines
from facta.log import SqliteLog


def tail(
    after: Annotated[
        int | None,
        typer.Option(
            "--after",
            help="Start after this position (0 = from the beginning). Default: the current "
            "end of the log, so only new events are printed.",
            show_default=False,
        ),
    ] = None,
    types: Annotated[
        list[str] | None, typer.Option("--type", help="Only events of this type (repeatable).")
    ] = None,
    prefix: Annotated[
        str | None, typer.Option("--prefix", help="Only streams whose name starts so.")
    ] = None,
    log: LogPath = DEFAULT_LOG,
) -> None:
    """Follow the log: catch up from --after, then print events as they are committed."""
    with open_log(log, create=False) as opened:
        start = opened.head_sync() if after is None else after
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_follow(opened, start, types or None, prefix))


async def _follow(log: SqliteLog, after: int, types: list[str] | None, prefix: str | None) -> None:
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        # Windows has no loop signal handlers: Ctrl-C still ends the run as KeyboardInterrupt.
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        async for event in log.subscribe(after=after, types=types, stream_prefix=prefix):
            write_lines([json_line(event_dict(event))])

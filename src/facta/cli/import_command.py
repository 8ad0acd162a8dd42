"""``facta import``: a CSV, JSON Lines or Parquet file into the log, with a progress bar."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from facta.cli.options import DEFAULT_LOG, LogPath, open_log
from facta.cli.output import write_json
from facta.importer import DEFAULT_BATCH_SIZE, FileImport, ImportProgress, ImportSettings
from facta.log import InvalidInput

ProgressHooks = tuple[Callable[[ImportProgress], None], Callable[[ImportProgress], None]]


def import_command(
    file: Annotated[Path, typer.Argument(help="A .csv, .jsonl/.ndjson or .parquet file.")],
    event_type: Annotated[str, typer.Option("--type", help="The type of every event.")],
    stream: Annotated[
        str,
        typer.Option(
            "--stream",
            help="Stream name template from columns, e.g. "
            "'flight-{carrier}{flight}-{year}-{month}-{day}'.",
        ),
    ],
    file_format: Annotated[
        str | None,
        typer.Option("--format", help="csv, jsonl or parquet (default: from the extension)."),
    ] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", help="Records per atomic batch.")
    ] = DEFAULT_BATCH_SIZE,
    on_error: Annotated[
        str,
        typer.Option(
            "--on-error",
            help="reject: write bad records to the reject file and go on; abort: stop, "
            "nothing of the bad batch written.",
        ),
    ] = "reject",
    rejects: Annotated[
        Path | None,
        typer.Option(
            "--rejects", help="Reject file (default: FILE.rejects.jsonl).", show_default=False
        ),
    ] = None,
    progress: Annotated[
        bool | None,
        typer.Option(
            "--progress/--no-progress",
            help="Show a progress bar on stderr (default: when stderr is a terminal).",
            show_default=False,
        ),
    ] = None,
    log: LogPath = DEFAULT_LOG,
) -> None:
    """Import a file as events, in atomic batches; rerun it to resume after a crash."""
    if on_error not in ("reject", "abort"):
        raise InvalidInput(f"--on-error must be reject or abort, found {on_error!r}")
    settings = ImportSettings(
        event_type=event_type,
        stream=stream,
        batch_size=batch_size,
        on_error="reject" if on_error == "reject" else "abort",
        rejects=rejects,
        format=file_format,
    )
    show = sys.stderr.isatty() if progress is None else progress
    job = FileImport(file, settings)  # refuses bad settings before the log is created
    with open_log(log, create=True) as opened, progress_bar(file.name, show) as hooks:
        summary = job.run(opened, on_start=hooks[0], on_progress=hooks[1])
    write_json(summary.as_dict())


@contextmanager
def progress_bar(name: str, show: bool) -> Iterator[ProgressHooks]:
    """Start and advance hooks for :func:`import_file`, drawing a rich bar on stderr if shown."""
    if not show:
        yield (_ignore, _ignore)
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskID,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("records · {task.fields[rate]} /s · {task.fields[rejected]} rejected"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
    )
    task: list[TaskID] = []

    def start(state: ImportProgress) -> None:
        task.append(bar.add_task(name, total=state.total, rate="-", rejected=0))

    def advance(state: ImportProgress) -> None:
        import time

        seconds = time.perf_counter() - state.started
        rate = f"{state.processed / seconds:,.0f}" if seconds > 0 and state.processed else "-"
        bar.update(task[0], completed=state.done, rate=rate, rejected=state.rejected)

    with bar:
        yield (start, advance)


def _ignore(_: ImportProgress) -> None:
    return None

"""Command-line pieces of the write side: ``facta processors``, ``facta trace``.

The ``facta`` command mounts ``processors_app`` and ``trace_command``; ``python -m
facta.entities.cli`` runs them on their own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from facta.entities.bench import bank_command, entities_command
from facta.entities.trace import render, trace
from facta.entities.tracking import processor_statuses, skip
from facta.log.errors import FactaError
from facta.log.sqlite import SqliteLog

LogOption = Annotated[Path, typer.Option("--log", "-l", envvar="FACTA_LOG", help="the log file")]

processors_app = typer.Typer(
    help="Processors: state, checkpoint, lag, last error; skip a failed event.",
    no_args_is_help=False,
)


def _open(path: Path) -> SqliteLog:
    if not path.exists():
        typer.echo(f"error: log file {path} does not exist", err=True)
        raise typer.Exit(1)
    return SqliteLog(path)


@processors_app.callback(invoke_without_command=True)
def processors_list(ctx: typer.Context, log: LogOption = Path("facta.db")) -> None:
    """List processors (when no subcommand is given)."""
    if ctx.invoked_subcommand is not None:
        return
    with _open(log) as opened:
        statuses = processor_statuses(opened)
    if not statuses:
        typer.echo("no processors")
        return
    typer.echo(f"{'name':<24} {'state':<7} {'checkpoint':>10} {'lag':>8}  last error")
    for s in statuses:
        error = s.last_error or "-"
        at = f" (at {s.failed_at})" if s.failed_at is not None else ""
        typer.echo(f"{s.name:<24} {s.state:<7} {s.checkpoint:>10} {s.lag:>8}  {error}{at}")


@processors_app.command("skip")
def processors_skip(name: str, position: int, log: LogOption = Path("facta.db")) -> None:
    """Move processor NAME past POSITION (the skip is recorded as a fact); it resumes."""
    with _open(log) as opened:
        try:
            moved = skip(opened, name, position)
        except FactaError as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(1) from None
    typer.echo(f"processor {name} now at position {moved.position}")


def trace_command(ident: str, log: LogOption = Path("facta.db")) -> None:
    """Print the causal tree of a command id or event id."""
    with _open(log) as opened:
        try:
            tree = trace(opened, ident)
        except FactaError as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(1) from None
    typer.echo(render(tree, marked=ident))


bench_app = typer.Typer(help="Benchmarks of the write side.", no_args_is_help=True)
bench_app.command("entities")(entities_command)
bench_app.command("bank")(bank_command)

app = typer.Typer(help="facta write side", no_args_is_help=True)
app.add_typer(processors_app, name="processors")
app.add_typer(bench_app, name="bench")
app.command("trace")(trace_command)


if __name__ == "__main__":
    app()

"""The ``facta`` command: the typer app, its commands, and the one place errors become exits.

Exit status: 0 success, 1 the operation failed (log busy, I/O error, internal error), 2 bad
input (usage, invalid data, invalid names, a refused import, a path that does not exist or may
not be written), 3 a failed expectation
(``WrongExpectedVersion``). An error is one line on stderr, never a traceback (set
``FACTA_DEBUG=1`` to see one).
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from collections.abc import Sequence

import typer

from facta.cli.import_command import import_command
from facta.cli.log_commands import append, read, stats, streams
from facta.cli.output import silence_stdout
from facta.cli.tail import tail
from facta.log import (
    DuplicateEventId,
    FactaError,
    IdempotencyKeyReused,
    InvalidInput,
    WrongExpectedVersion,
)

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_EXPECTATION = 3

app = typer.Typer(
    name="facta",
    help="facta: an events-first data platform. The log is the truth.",
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
)
app.command("append")(append)
app.command("read")(read)
app.command("tail")(tail)
app.command("streams")(streams)
app.command("stats")(stats)
app.command("import")(import_command)


@app.command("trace")
def trace(
    ident: str = typer.Argument(help="A command id or event id."),
    log: str = typer.Option("facta.db", "--log", envvar="FACTA_LOG", help="The log file."),
) -> None:
    """Print the causal tree of a command or event (found through the causality index)."""
    from pathlib import Path

    from facta.entities.cli import trace_command

    trace_command(ident, Path(log))


def _run_lazy(module_name: str, attribute: str, name: str, args: list[str]) -> None:
    """Run a sub-app that is imported only when its command runs, so the heavier dependencies
    of benchmarks, views (DuckDB) or the server never slow down or break the log commands."""
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise InvalidInput(
            f"facta {name} is not available: module {exc.name!r} is missing "
            "(pip install -e '.[bench]')"
        ) from None
    wrapper = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    wrapper.add_typer(getattr(module, attribute), name=name)
    command = typer.main.get_command(wrapper)
    result = command.main(args=[name, *args], prog_name="facta", standalone_mode=False)
    if isinstance(result, int) and result != 0:
        raise typer.Exit(result)


_PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}

# name -> (module, typer app attribute, help, the sub-command a top-level alias runs)
_LAZY: dict[str, tuple[str, str, str, str | None]] = {
    "bench": ("facta.bench.cli", "bench_app", "Benchmarks: facta bench log.", None),
    "views": ("facta.views.cli", "views_app", "Materialized views: list, run, rebuild.", None),
    "plan": ("facta.views.cli", "views_app", "Show what apply would change (views).", "plan"),
    "apply": ("facta.views.cli", "views_app", "Move the views to facta.toml.", "apply"),
    "sql": ("facta.views.cli", "views_app", "Read-only SQL over the views.", "sql"),
    "serve": ("facta.server.cli", "serve_app", "The HTTP API and live log (SSE).", None),
    "processors": ("facta.entities.cli", "processors_app", "Processors: list, skip.", None),
}


def _lazy_command(name: str) -> None:
    module_name, attribute, help_text, alias = _LAZY[name]

    def command(context: typer.Context) -> None:
        args = list(context.args)
        if alias is None:
            _run_lazy(module_name, attribute, name, args)
        else:
            _run_lazy(module_name, attribute, "views", [alias, *args])

    command.__doc__ = help_text
    app.command(name, context_settings=_PASS_THROUGH, add_help_option=False)(command)


for _name in _LAZY:
    _lazy_command(_name)


def exit_code_of(error: BaseException) -> int:
    """The documented exit status for an error raised by a command."""
    if isinstance(error, WrongExpectedVersion):
        return EXIT_EXPECTATION
    if isinstance(error, InvalidInput | IdempotencyKeyReused | DuplicateEventId):
        return EXIT_BAD_INPUT
    return EXIT_FAILED


def run(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    command = typer.main.get_command(app)
    try:
        result = command.main(args=args, prog_name="facta", standalone_mode=False)
    except FactaError as exc:
        return _fail(exit_code_of(exc), str(exc))
    except BrokenPipeError:
        silence_stdout()
        return 0
    except KeyboardInterrupt:
        return 130
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as exc:
        return _fail(EXIT_BAD_INPUT, f"{exc.strerror}: {exc.filename!r}")
    except OSError as exc:
        return _fail(EXIT_FAILED, f"{exc.strerror or exc}: {exc.filename!r}")
    except Exception as exc:
        usage = _usage_error(exc)
        if usage is not None:
            return _fail(usage[0], usage[1])
        if os.environ.get("FACTA_DEBUG"):
            traceback.print_exc()
        return _fail(EXIT_FAILED, f"{type(exc).__name__}: {exc}")
    return result if isinstance(result, int) else 0


def _usage_error(exc: Exception) -> tuple[int, str] | None:
    """Click's usage errors (typer vendors click, so match them by shape, not by class)."""
    if type(exc).__name__ == "NoArgsIsHelpError":
        return 0, ""
    format_message = getattr(exc, "format_message", None)
    exit_code = getattr(exc, "exit_code", None)
    if callable(format_message) and isinstance(exit_code, int):
        context = getattr(exc, "ctx", None)
        command = getattr(context, "command_path", None) or "facta"
        return EXIT_BAD_INPUT, f"{format_message()} (see '{command} --help')"
    if type(exc).__name__ == "Abort":
        return 130, "aborted"
    return None


def _fail(code: int, message: str) -> int:
    if message:
        line = " ".join(message.split())
        print(f"facta: error: {line}", file=sys.stderr)
    return code


def main() -> None:
    """The console script."""
    sys.exit(run())

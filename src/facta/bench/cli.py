"""``facta bench``: benchmarks that print one JSON line per measurement."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Annotated, Any, NoReturn

import typer

from facta.bench.appends import (
    Sizes,
    append_batch_strict,
    append_concurrent_strict,
    append_concurrent_sustained,
    append_sequential_strict,
)
from facta.bench.method import chosen
from facta.bench.reads import read_all_decoded

bench_app = typer.Typer(help="Measure facta against baselines run in the same process.")

LOG_BENCHES: dict[str, Callable[[Sizes, int], dict[str, Any]]] = {
    "append_sequential_strict": append_sequential_strict,
    "append_concurrent_strict": append_concurrent_strict,
    "append_concurrent_sustained": append_concurrent_sustained,
    "append_batch_strict": append_batch_strict,
    "read_all_decoded": lambda sizes, pairs: read_all_decoded(sizes.read_events, pairs),
}


@bench_app.callback()
def bench() -> None:
    """Benchmarks; each prints JSON lines with a baseline measured in the same run."""


@bench_app.command("log")
def log_command(
    quick: Annotated[bool, typer.Option("--quick", help="Small sizes: a smoke test.")] = False,
    only: Annotated[
        list[str] | None, typer.Option("--only", help="Run only this benchmark (repeatable).")
    ] = None,
    pairs: Annotated[
        int, typer.Option("--pairs", min=1, help="Baseline/facta pairs per line.")
    ] = 3,
    vs: Annotated[
        str | None, typer.Option("--vs", help="Compare with another library: eventsourcing.")
    ] = None,
) -> None:
    """Benchmark the embedded log; one JSON object per line on stdout."""
    sizes = Sizes.quick() if quick else Sizes.full()
    if vs is not None:
        if vs != "eventsourcing":
            _fail(f"--vs: unknown library {vs!r}, expected 'eventsourcing'")
        try:
            from facta.bench.versus import versus_eventsourcing
        except ImportError as exc:
            _fail(f"--vs eventsourcing needs the bench extra (pip install 'facta[bench]'): {exc}")

        for line in versus_eventsourcing(quick=quick, pairs=pairs):
            _emit(line)
        return
    try:
        names = chosen(only, list(LOG_BENCHES))
    except ValueError as exc:
        _fail(f"--only: {exc}")
    for name in names:
        _emit(LOG_BENCHES[name](sizes, pairs))


def _emit(line: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _register_other_benchmarks() -> None:
    """The write side's and the views' benchmarks live beside their code; they are listed here
    so that every benchmark is ``facta bench NAME``."""
    from facta.entities.bench import bank_command, entities_command
    from facta.server.bench import serve_command
    from facta.views.cli import bench_command as views_command

    bench_app.command("entities")(entities_command)
    bench_app.command("bank")(bank_command)
    bench_app.command("views")(views_command)
    bench_app.command("serve")(serve_command)


_register_other_benchmarks()

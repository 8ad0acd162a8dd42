"""``facta views``: list views, maintain them (``run``), rebuild one (``rebuild NAME``).

Mounted by the main CLI as a sub-app. Errors print one line and exit non-zero.
"""

from __future__ import annotations

import decimal
import json
import math
import os
import signal
import threading
from pathlib import Path
from typing import Annotated, Any

import apsw
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from facta.dashboards.applied import AppliedDashboards, apply_dashboards, plan_dashboards
from facta.dashboards.definition import (
    Dashboard,
    DashboardError,
    ViewCatalog,
    load_dashboards,
    read_project,
)
from facta.views.compile import CompiledView, compile_view
from facta.views.definition import DefinitionError, load_views
from facta.views.engine import EngineSettings, ViewEngine, ViewError, follow, rebuild
from facta.views.locks import ViewLocked
from facta.views.plan import apply, plan
from facta.views.sql import SqlRefused, SqlTimeout, run_sql
from facta.views.store import ViewStore, views_path

views_app = typer.Typer(help="Materialized views over the log.", no_args_is_help=False)


def _console() -> Console:
    return Console()  # created per command, so COLUMNS and redirection are honoured


LogOption = Annotated[Path, typer.Option("--log", help="The log file.", envvar="FACTA_LOG")]
ProjectOption = Annotated[
    Path, typer.Option("--project", help="The project file with [views.*] tables.")
]


def _fail(message: str) -> typer.Exit:
    Console(soft_wrap=True).print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(1)


def _log_head(log: Path) -> int:
    if not log.exists():
        raise _fail(f"no log at {log}")
    conn: Any = apsw.Connection(os.fspath(log), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return int(conn.execute("SELECT coalesce(max(position), 0) FROM events").fetchone()[0])
    finally:
        conn.close()


def _compiled(project: Path, names: list[str] | None = None) -> list[CompiledView]:
    if not project.exists():
        raise _fail(f"no project file at {project}")
    try:
        views = [compile_view(v) for v in load_views(project)]
    except DefinitionError as exc:
        raise _fail(str(exc)) from None
    if names:
        known = {v.name: v for v in views}
        missing = [n for n in names if n not in known]
        if missing:
            raise _fail(f"{project} defines no view {missing[0]!r} (views: {', '.join(known)})")
        views = [known[n] for n in names]
    return views


def _dashboards(project: Path, views: list[CompiledView]) -> list[Dashboard]:
    """The project's dashboards, each panel checked against the declared views."""
    catalogs = {view.name: ViewCatalog.of(view) for view in views}
    try:
        return load_dashboards(read_project(project), catalogs)
    except DashboardError as exc:
        raise _fail(str(exc)) from None


@views_app.callback(invoke_without_command=True)
def list_views(ctx: typer.Context, log: LogOption = Path("facta.db")) -> None:
    """List each view: checkpoint, lag, size, rejected and unmatched counts, maintainer."""
    if ctx.invoked_subcommand is not None:
        return
    head = _log_head(log)
    store = ViewStore(views_path(log))
    table = Table(
        "view",
        "generation",
        "checkpoint",
        "lag",
        "cells",
        "bytes",
        "rejected events",
        "rejected values",
        "unmatched",
        "maintainer",
    )
    for info in store.views():
        cells, size = store.size(info.view, info.generation)
        values = sum(v["count"] for v in info.rejected.get("values", {}).values())
        table.add_row(
            info.view,
            str(info.generation),
            str(info.checkpoint),
            str(max(head - info.checkpoint, 0)),
            str(cells),
            str(size),
            str(info.rejected.get("events", {}).get("count", 0)),
            str(values),
            str(sum(info.rejected.get("unmatched", {}).values())),
            store.holder(info.view) or "-",
        )
    store.close()
    _console().print(table)


@views_app.command("run")
def run_views(
    names: Annotated[list[str] | None, typer.Argument(help="Views to run (default: all).")] = None,
    log: LogOption = Path("facta.db"),
    project: ProjectOption = Path("facta.toml"),
    once: Annotated[bool, typer.Option(help="Stop when caught up with the log.")] = False,
    batch_size: Annotated[int, typer.Option(help="Events per micro-batch (<= 50000).")] = 50_000,
) -> None:
    """Maintain views: fold new events into them (until stopped, or once with --once)."""
    _log_head(log)
    views = _compiled(project, names)
    store = ViewStore(views_path(log))
    settings = EngineSettings(batch_size=batch_size, commit_every_events=batch_size)
    engines: list[ViewEngine] = []
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        for view in views:
            engines.append(ViewEngine(log, view, store, settings).open())
        if once:
            for engine in engines:
                engine.run()
        else:
            follow(engines, stop)
    except (ViewLocked, ViewError) as exc:
        raise _fail(str(exc)) from None
    except KeyboardInterrupt:
        pass
    finally:
        for engine in engines:
            engine.close()
    for engine in engines:
        _console().print(f"{engine.view.name}: checkpoint {engine.checkpoint}", highlight=False)


@views_app.command("rebuild")
def rebuild_view(
    name: Annotated[str, typer.Argument(help="The view to rebuild.")],
    log: LogOption = Path("facta.db"),
    project: ProjectOption = Path("facta.toml"),
) -> None:
    """Rebuild a view from the whole log beside the live one, then swap it in."""
    _log_head(log)
    [view] = _compiled(project, [name])
    store = ViewStore(views_path(log))
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    console = _console()
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(f"rebuilding {name}", total=None)

        def report(done: int, head: int) -> None:
            progress.update(task, completed=done, total=head)

        try:
            engine = rebuild(log, view, store, progress=report)
        except (ViewLocked, ViewError) as exc:
            raise _fail(str(exc)) from None
    engine.close()
    console.print(
        f"{name}: generation {engine.generation} at checkpoint {engine.checkpoint}", highlight=False
    )


@views_app.command("sql")
def sql_command(
    statement: Annotated[str, typer.Argument(help="One SELECT over the views.")],
    log: LogOption = Path("facta.db"),
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
    row_cap: Annotated[int, typer.Option(help="Refuse results with more rows.")] = 10_000,
    time_limit: Annotated[float, typer.Option(help="Seconds before the query is stopped.")] = 10.0,
) -> None:
    """Run a read-only SELECT over the views (finalized and mergeable columns) in a sandbox."""
    _log_head(log)
    store = ViewStore(views_path(log))
    try:
        table = run_sql(store, statement, row_cap=row_cap, time_limit=time_limit)
    except (SqlRefused, SqlTimeout) as exc:
        raise _fail(str(exc)) from None
    finally:
        store.close()
    rows = [{k: _plain(v) for k, v in row.items()} for row in table.to_pylist()]
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row, default=str, allow_nan=False))
        return
    out = Table(*table.column_names)
    for row in rows:
        out.add_row(*("" if v is None else str(v) for v in row.values()))
    _console().print(out)


def _plain(value: Any) -> Any:
    """No NaN or infinity leaves facta: they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


@views_app.command("plan")
def plan_command(
    log: LogOption = Path("facta.db"), project: ProjectOption = Path("facta.toml")
) -> None:
    """Show what `apply` would do to the views and dashboards: create, rebuild, change, drop."""
    _log_head(log)
    views = _compiled(project)
    dashboards = _dashboards(project, views)
    store = ViewStore(views_path(log))
    steps = plan(store, views)
    store.close()
    with AppliedDashboards(log) as applied:
        steps += plan_dashboards(applied, dashboards)
    for step in steps:
        typer.echo(str(step))


@views_app.command("apply")
def apply_command(
    log: LogOption = Path("facta.db"), project: ProjectOption = Path("facta.toml")
) -> None:
    """Create, rebuild, change and drop views and dashboards until they match the project file."""
    _log_head(log)
    views = _compiled(project)
    dashboards = _dashboards(project, views)
    store = ViewStore(views_path(log))
    # A running `facta serve` hands over the views it maintains when asked (between batches).
    store.lock_wait = 10.0
    try:
        done = apply(log, store, views)
    except (ViewLocked, ViewError) as exc:
        raise _fail(str(exc)) from None
    finally:
        store.close()
    with AppliedDashboards(log) as applied:
        done += apply_dashboards(applied, dashboards)
    for step in done:
        typer.echo(str(step))
    if not done:
        typer.echo("nothing to do")


@views_app.command("bench")
def bench_command(
    copies: Annotated[int, typer.Option(help="Copies of the 336,776 flights.")] = 3,
    rounds: Annotated[int, typer.Option(help="Alternating pairs per rebuild case.")] = 3,
    limit: Annotated[int | None, typer.Option(help="Use only the first N flights.")] = None,
    queries: Annotated[int, typer.Option(help="Queries per query case.")] = 200,
    live_seconds: Annotated[
        float, typer.Option(help="Seconds of 100 appends of 50 events a second (live latency).")
    ] = 60.0,
) -> None:
    """Benchmark view rebuilds against a same-run DuckDB baseline, and query latency."""
    from facta.views.bench import print_line, run_bench

    run_bench(
        print_line,
        copies=copies,
        rounds=rounds,
        limit=limit,
        queries=queries,
        live_seconds=live_seconds,
    )

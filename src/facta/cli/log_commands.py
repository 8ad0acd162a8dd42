"""``facta append``, ``read``, ``streams`` and ``stats``: the log from a shell."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import msgspec
import typer

from facta.cli.options import DEFAULT_LOG, AsJson, LogPath, open_log
from facta.cli.output import json_line, write_events, write_json, write_lines
from facta.log import InvalidInput, NewEvent, SqliteLog, parse_expectation

_PAGE = 1000
_LAST_VERSION = 2**62


def append(
    stream: Annotated[str, typer.Argument(help="The stream to append to.")],
    event_type: Annotated[str, typer.Argument(metavar="TYPE", help="The event type.")],
    data: Annotated[
        str | None,
        typer.Argument(
            metavar="[DATA]",
            help="A JSON object (default {}), or - to read it from stdin (one object, or one "
            "object per line: several events appended atomically).",
            show_default=False,
        ),
    ] = None,
    expect: Annotated[
        str, typer.Option("--expect", help="N (exact version), any, none or exists.")
    ] = "any",
    key: Annotated[
        str | None, typer.Option("--key", help="Idempotency key: a retry returns the original.")
    ] = None,
    meta: Annotated[
        str | None, typer.Option("--meta", help="Metadata, a JSON object.", show_default=False)
    ] = None,
    log: LogPath = DEFAULT_LOG,
) -> None:
    """Append an event to a stream; print its position(s) and the stream's version."""
    expectation = parse_expectation(expect)
    bodies = _read_data(data)
    metadata = _parse_json(meta, "--meta") if meta is not None else {}
    events = [NewEvent(type=event_type, data=body, metadata=metadata) for body in bodies]
    with open_log(log, create=True) as opened:
        result = opened.append_sync(stream, events, expect=expectation, key=key)
    line: dict[str, Any] = {
        "stream": stream,
        "version": result.version_of(stream),
        "first_position": result.first_position,
        "last_position": result.last_position,
        "events": len(events),
        "replayed": result.replayed,
    }
    if key is not None:
        line["key"] = key
    write_json(line)


def _read_data(data: str | None) -> list[Any]:
    if data is None:
        return [{}]
    if data != "-":
        return [_parse_json(data, "DATA")]
    text = sys.stdin.read()
    if not text.strip():
        raise InvalidInput("DATA from stdin is empty: expected a JSON object")
    try:
        return [msgspec.json.decode(text)]
    except msgspec.DecodeError:
        pass
    lines = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    return [_parse_json(line, f"stdin line {n}") for n, line in lines]


def _parse_json(text: str, what: str) -> Any:
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError as exc:
        raise InvalidInput(f"{what} is not valid JSON: {exc}") from None


def read(
    stream: Annotated[
        str | None, typer.Argument(help="The stream to read (or --all).", show_default=False)
    ] = None,
    read_all: Annotated[bool, typer.Option("--all", help="Read the whole log.")] = False,
    after: Annotated[
        int | None, typer.Option("--after", help="With --all: events after this position.")
    ] = None,
    types: Annotated[
        list[str] | None,
        typer.Option("--type", help="With --all: only events of this type (repeatable)."),
    ] = None,
    prefix: Annotated[
        str | None, typer.Option("--prefix", help="With --all: only streams starting so.")
    ] = None,
    from_version: Annotated[
        int | None, typer.Option("--from-version", help="With STREAM: start at this version.")
    ] = None,
    backward: Annotated[
        bool, typer.Option("--backward", help="With STREAM: newest first.")
    ] = False,
    limit: Annotated[int | None, typer.Option("--limit", help="At most N events.")] = None,
    log: LogPath = DEFAULT_LOG,
) -> None:
    """Print events as JSON lines: one stream, or the whole log (--all) in position order."""
    if (stream is None) == (not read_all):
        raise InvalidInput("read needs a STREAM or --all (not both)")
    if limit is not None and limit < 1:
        raise InvalidInput(f"--limit must be >= 1, found {limit}")
    if read_all and (from_version is not None or backward):
        raise InvalidInput("--from-version and --backward apply to a STREAM, not to --all")
    if stream is not None and (after is not None or types or prefix is not None):
        raise InvalidInput("--after, --type and --prefix apply to --all, not to a STREAM")
    with open_log(log, create=False) as opened:
        if stream is None:
            _read_all(opened, after or 0, types or None, prefix, limit)
        else:
            _read_stream(opened, stream, from_version, backward, limit)


def _read_all(
    log: SqliteLog, after: int, types: list[str] | None, prefix: str | None, limit: int | None
) -> None:
    left = limit
    while left is None or left > 0:
        page = _PAGE if left is None else min(_PAGE, left)
        events = log.read_all_sync(after=after, limit=page, types=types, stream_prefix=prefix)
        if not events:
            return
        write_events(events)
        after = events[-1].position
        if left is not None:
            left -= len(events)


def _read_stream(
    log: SqliteLog, stream: str, from_version: int | None, backward: bool, limit: int | None
) -> None:
    version = from_version if from_version is not None else (_LAST_VERSION if backward else 1)
    left = limit
    while (left is None or left > 0) and version >= 1:
        page = _PAGE if left is None else min(_PAGE, left)
        events = log.read_stream_sync(stream, from_version=version, limit=page, backward=backward)
        if not events:
            return
        write_events(events)
        version = events[-1].version + (-1 if backward else 1)
        if left is not None:
            left -= len(events)


def streams(
    prefix: Annotated[
        str | None, typer.Option("--prefix", help="Only streams whose name starts so.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most N streams, by name.")] = 100,
    as_json: AsJson = False,
    log: LogPath = DEFAULT_LOG,
) -> None:
    """List streams with their version, last position and last time."""
    with open_log(log, create=False) as opened:
        found = opened.streams_sync(prefix=prefix, limit=limit)
    rows = [
        {
            "stream": info.name,
            "version": info.version,
            "last_position": info.last_position,
            "last_recorded_at": info.last_recorded_at,
        }
        for info in found
    ]
    if as_json:
        write_lines(json_line(row) for row in rows)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("stream", "version", "last position", "last recorded at")
    for info in found:
        table.add_row(
            info.name,
            str(info.version),
            str(info.last_position),
            info.last_recorded_at.isoformat(timespec="microseconds"),
        )
    console = Console()
    console.print(table)
    if len(rows) == limit:
        console.print(f"first {limit} streams by name; --limit N shows more", style="dim")


def stats(as_json: AsJson = False, log: LogPath = DEFAULT_LOG) -> None:
    """Events, streams, file and WAL size, durability read back from SQLite, process metrics."""
    with open_log(log, create=False) as opened:
        found = opened.stats_sync()
    if as_json:
        write_json(found)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("", "", show_header=False, box=None)
    effective = ", ".join(f"{k}={v}" for k, v in found.effective.items())
    for name, value in (
        ("log", found.path),
        ("events", f"{found.events:,}"),
        ("streams", f"{found.streams:,}"),
        ("idempotency keys", f"{found.outcomes:,}"),
        ("file size", _size(found.file_bytes)),
        ("WAL size", _size(found.wal_bytes)),
        ("durability", f"{found.durability} (effective: {effective})"),
        ("SQLite", found.sqlite_version),
    ):
        table.add_row(name, value)
    for name, value in found.process.items():
        table.add_row(f"process {name}", _metric(value))
    Console().print(table)


def _size(count: int) -> str:
    if count < 1024:
        return f"{count:,} B"
    scaled = float(count)
    for unit in ("KiB", "MiB", "GiB"):
        scaled /= 1024
        if scaled < 1024 or unit == "GiB":
            break
    return f"{scaled:,.1f} {unit} ({count:,} B)"


def _metric(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={_metric(v)}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:.3g}"
    return "-" if value is None else str(value)

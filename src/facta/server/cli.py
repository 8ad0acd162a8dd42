"""``facta serve``: run the HTTP API over a log; ``facta serve token``: create an API token.

The ``facta`` command mounts :data:`serve_app` as its ``serve`` sub-command; until then,
``python -m facta.server`` runs it directly.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
import uvicorn

from facta.log.config import LogConfig
from facta.log.errors import FactaError
from facta.log.sqlite import SqliteLog
from facta.server.app import create_app
from facta.server.config import ServerConfig
from facta.server.entity_host import load_modules
from facta.server.process import SERVING
from facta.server.tokens import (
    TOKENS_ENV,
    TokenConfigError,
    TokenStore,
    create_token,
    readable_by_others,
    tokens_file_path,
)

serve_app = typer.Typer(
    help="Serve the HTTP API (append, read, live log over SSE) on 127.0.0.1.",
    add_completion=False,
)


@serve_app.callback(invoke_without_command=True)
def serve(
    ctx: typer.Context,
    log: Annotated[Path, typer.Option(help="the log file")] = Path("facta.db"),
    project: Annotated[
        Path | None,
        typer.Option(help="maintain the views this project file declares (facta.toml)"),
    ] = None,
    module: Annotated[
        list[str] | None,
        typer.Option(help="a Python module defining KINDS and/or PROCESSORS (repeatable)"),
    ] = None,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port (0 picks a free one)")] = 8000,
    allow_host: Annotated[
        list[str] | None, typer.Option(help="accepted Host header (repeatable)")
    ] = None,
    cors_origin: Annotated[
        list[str] | None, typer.Option(help="allow this origin (CORS is off by default)")
    ] = None,
    open_read: Annotated[bool, typer.Option(help="let requests without a token read")] = False,
    tokens_file: Annotated[
        Path | None, typer.Option(help="token hash lines (default .facta/tokens)")
    ] = None,
    max_body_bytes: Annotated[int, typer.Option(help="request body limit")] = 32 * 1024 * 1024,
    sse_heartbeat: Annotated[float, typer.Option(help="idle live stream heartbeat, s")] = 5.0,
    sse_queue: Annotated[int, typer.Option(help="pending live messages per stream")] = 10_000,
    max_connections_per_token: Annotated[int, typer.Option(help="live streams per token")] = 32,
    max_live_queries_per_token: Annotated[
        int, typer.Option(help="live view queries per token")
    ] = 64,
    live_max_rate: Annotated[
        float, typer.Option(help="messages a second to a live view client that falls behind")
    ] = 10.0,
    lock_timeout: Annotated[float, typer.Option(help="wait for another writer, s")] = 5.0,
) -> None:
    """Serve the log over HTTP until interrupted."""
    if ctx.invoked_subcommand is not None:
        return
    try:
        config = ServerConfig(
            host=host,
            port=port,
            allowed_hosts=tuple(allow_host or ()),
            cors_origins=tuple(cors_origin or ()),
            open_read=open_read,
            max_body_bytes=max_body_bytes,
            sse_heartbeat=sse_heartbeat,
            sse_queue=sse_queue,
            max_connections_per_token=max_connections_per_token,
            max_live_queries_per_token=max_live_queries_per_token,
            live_max_rate=live_max_rate,
        )
        tokens = TokenStore.from_environment(tokens_file)
        registered = load_modules(module) if module else None
        opened = SqliteLog(log, LogConfig(lock_timeout=lock_timeout))
        if project is not None and not project.is_file():
            raise FileNotFoundError(f"no project file at {project}")
    except (FactaError, TokenConfigError, OSError) as exc:
        typer.echo(f"facta serve: {exc}", err=True)
        raise typer.Exit(2) from None
    if readable_by_others(tokens_file_path(tokens_file)):
        typer.echo(
            f"facta serve: warning: {tokens_file_path(tokens_file)} is readable by other users; "
            "restrict it with 'chmod 600'",
            err=True,
        )
    if len(tokens) == 0 and not open_read:
        typer.echo(
            f"facta serve: no tokens configured ({TOKENS_ENV} or the tokens file): every route "
            "but /health and /docs will answer 401; create one with 'facta serve token NAME'",
            err=True,
        )
    try:
        app = create_app(opened, config, tokens, project=project, registered=registered)
        run_server(app, config)
    finally:
        opened.close()


@serve_app.command("token")
def token(
    name: Annotated[str, typer.Argument(help="who the token is for")],
    scopes: Annotated[str, typer.Option(help="comma-separated: read, append, admin")] = "read",
) -> None:
    """Create a token: print it once, and the hash line for FACTA_TOKENS or the tokens file."""
    try:
        created = create_token(name, [s.strip() for s in scopes.split(",")])
    except TokenConfigError as exc:
        typer.echo(f"facta serve token: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"token (shown once, give it to {name}): {created.token}")
    typer.echo(f"hash line (add to {TOKENS_ENV} or .facta/tokens): {created.line}")


def run_server(
    app: object, config: ServerConfig, on_ready: Callable[[str], None] | None = None
) -> None:
    """Listen on ``config.host``/``config.port``, announce the URL, serve until interrupted.

    The socket is bound before ``on_ready`` (default: print ``facta serving <url>``) is called,
    so with ``port=0`` the URL names the free port that was picked.
    """
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on sockets
    # whose proto says TCP. With Nagle on, a response written in two parts (headers, then
    # body) waited for the client's delayed ACK: about 40 ms on every request and SSE message.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((config.host.strip("[]"), config.port))
    sock.listen(256)
    bound_port = sock.getsockname()[1]
    shown = f"[{config.host}]" if family == socket.AF_INET6 else config.host
    url = f"http://{shown}:{bound_port}"
    if on_ready is None:
        print(f"{SERVING}{url}", flush=True)
    else:
        on_ready(url)
    server = uvicorn.Server(
        uvicorn.Config(
            app,  # type: ignore[arg-type]
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=2,
        )
    )
    server.run(sockets=[sock])


def main() -> None:
    serve_app(prog_name="facta serve")


if __name__ == "__main__":
    main()

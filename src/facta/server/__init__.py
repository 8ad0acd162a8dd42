"""The HTTP API of facta: appends, reads, the live log over SSE, tokens with scopes."""

from facta.server.app import create_app
from facta.server.auth import Access, requires
from facta.server.cli import run_server, serve_app
from facta.server.config import ServerConfig
from facta.server.entity_host import ServedKind
from facta.server.tokens import Principal, Scope, TokenStore, create_token

__all__ = [
    "Access",
    "Principal",
    "Scope",
    "ServedKind",
    "ServerConfig",
    "TokenStore",
    "create_app",
    "create_token",
    "requires",
    "run_server",
    "serve_app",
]

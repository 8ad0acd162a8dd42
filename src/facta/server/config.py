"""Every setting of ``facta serve``, with its documented default, in one place."""

from __future__ import annotations

import dataclasses
from typing import Final

from facta.log.errors import InvalidInput

LOOPBACK_HOSTS: Final = ("127.0.0.1", "localhost", "[::1]")


@dataclasses.dataclass(frozen=True, slots=True)
class ServerConfig:
    """Settings of the HTTP server. Sizes are bytes, times seconds.

    host, port:
        where to listen; loopback unless told otherwise (``port=0`` picks a free port).
    allowed_hosts:
        ``Host`` header values accepted (against DNS rebinding), without the port. Defaults to
        the loopback names plus ``host`` itself.
    cors_origins:
        origins allowed to call the API from another page; empty (the default) turns CORS off.
    open_read:
        let requests without a token use ``read`` routes. Writing is never open.
    max_body_bytes:
        request bodies over this get 413, with or without ``Content-Length``.
    sse_heartbeat:
        an idle live stream gets a ``progress`` message this often.
    sse_queue:
        messages a live subscriber may have pending before it is disconnected (it resumes by id).
    max_connections_per_token:
        open live streams per token (503 + ``Retry-After`` beyond).
    max_live_queries_per_token:
        open live view queries per token (503 + ``Retry-After`` beyond); each is also a stream.
    live_max_rate:
        messages a second a live view query sends a client that falls behind, or through
        ``GET /live/queries`` (more changes coalesce); a client that keeps up gets each update.
    session_ttl:
        lifetime of a browser session cookie; ``secure_cookies`` marks them ``Secure`` (HTTPS).
    """

    host: str = "127.0.0.1"
    port: int = 8000
    allowed_hosts: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()
    open_read: bool = False
    max_body_bytes: int = 32 * 1024 * 1024
    sse_heartbeat: float = 5.0
    sse_queue: int = 10_000
    max_connections_per_token: int = 32
    max_live_queries_per_token: int = 64
    live_max_rate: float = 10.0
    retry_after: int = 1
    session_ttl: float = 12 * 3600.0
    max_sessions: int = 10_000
    secure_cookies: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise InvalidInput(f"port must be 0-65535, found {self.port}")
        for name in (
            "max_body_bytes",
            "sse_heartbeat",
            "sse_queue",
            "max_connections_per_token",
            "max_live_queries_per_token",
            "live_max_rate",
            "retry_after",
            "session_ttl",
            "max_sessions",
        ):
            value = getattr(self, name)
            if not value > 0:
                raise InvalidInput(f"ServerConfig.{name} must be > 0, found {value!r}")
        if "*" in self.allowed_hosts:
            raise InvalidInput("allowed_hosts cannot contain '*': name the hosts you serve")

    @property
    def accepted_hosts(self) -> frozenset[str]:
        """The ``Host`` names the server answers to (lower case, without port)."""
        names = set(self.allowed_hosts or LOOPBACK_HOSTS)
        if not self.allowed_hosts:
            names.add(_bracket(self.host))
        return frozenset(n.lower() for n in names if n not in ("0.0.0.0", "[::]"))


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host

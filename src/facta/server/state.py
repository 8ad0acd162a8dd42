"""What every route of one server shares: the log, settings, tokens, sessions, live feed, views."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from starlette.requests import Request

from facta.log.sqlite import SqliteLog
from facta.server.config import ServerConfig
from facta.server.entity_host import EntityHost
from facta.server.live import LogFeed
from facta.server.live_views import LiveViews
from facta.server.problems import ApiError, unavailable
from facta.server.sessions import SessionStore
from facta.server.tokens import TokenStore
from facta.server.view_service import ViewService


class ConnectionLimits:
    """Open live streams per token; beyond the cap a new one gets 503 + ``Retry-After``."""

    def __init__(self, limit: int, retry_after: int, what: str = "live streams") -> None:
        self.limit = limit
        self.retry_after = retry_after
        self.what = what
        self.open: Counter[str] = Counter()

    def acquire(self, who: str) -> None:
        if self.open[who] >= self.limit:
            code = (
                "too_many_connections" if self.what == "live streams" else "too_many_live_queries"
            )
            raise unavailable(
                code,
                f"{who!r} already has {self.open[who]} {self.what} open; the limit is "
                f"{self.limit} per token",
                self.retry_after,
            )
        self.open[who] += 1

    def release(self, who: str) -> None:
        self.open[who] -= 1
        if self.open[who] <= 0:
            del self.open[who]


@dataclass
class ServerState:
    log: SqliteLog
    config: ServerConfig
    tokens: TokenStore
    sessions: SessionStore
    feed: LogFeed
    views: ViewService
    entities: EntityHost | None = None
    connections: ConnectionLimits = field(init=False)
    live_limits: ConnectionLimits = field(init=False)
    live_views: LiveViews = field(init=False)

    def __post_init__(self) -> None:
        self.connections = ConnectionLimits(
            self.config.max_connections_per_token, self.config.retry_after
        )
        self.live_limits = ConnectionLimits(
            self.config.max_live_queries_per_token, self.config.retry_after, "live view queries"
        )
        self.live_views = LiveViews(self.views, max_rate=self.config.live_max_rate)


def server_state(request: Request) -> ServerState:
    state = request.app.state.facta
    if not isinstance(state, ServerState):
        raise ApiError(500, "not_configured", "this app was not built by facta.server.create_app")
    return state

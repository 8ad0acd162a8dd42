"""facta: an events-first data platform. The log is the truth; every other state is a cache."""

from facta.log import *  # noqa: F403
from facta.log import __all__ as _log_all
from facta.log.sqlite import SqliteLog as _SqliteLog


def open_log(path: str = "facta.db", config: "LogConfig | None" = None) -> _SqliteLog:  # noqa: F405
    """Open (or create) the embedded log at ``path``."""
    return _SqliteLog(path, config)


__all__ = [*_log_all, "open_log"]
__version__ = "0.1.0"

"""Every limit and setting of a log, with its documented default, in one place."""

from __future__ import annotations

import dataclasses
from typing import Literal

from facta.log.errors import InvalidInput

Durability = Literal["strict", "normal"]

MiB = 1024 * 1024


@dataclasses.dataclass(frozen=True, slots=True)
class LogConfig:
    """Settings of a log. All sizes are bytes, all times seconds.

    durability:
        ``strict`` (default): ``synchronous=FULL`` plus ``fullfsync`` and
        ``checkpoint_fullfsync``; an acknowledged append survives power loss.
        ``normal``: ``synchronous=NORMAL`` plus ``checkpoint_fullfsync`` (a checkpoint must reach
        the disk before the WAL restarts); an acknowledged append survives a process crash, and
        after power loss the log is a prefix of commit order (recent appends may be missing).
    """

    durability: Durability = "strict"
    max_event_bytes: int = 1 * MiB
    max_append_bytes: int = 16 * MiB
    max_append_events: int = 10_000
    lock_timeout: float = 5.0
    append_timeout: float = 30.0
    queue_limit: int = 10_000
    max_batch_appends: int = 512
    max_batch_events: int = 20_000
    page_size: int = 500
    checkpoint_every: int = 10_000
    poll_interval: float = 0.010
    wal_checkpoint_bytes: int = 16 * MiB
    wal_max_bytes: int = 64 * MiB

    def __post_init__(self) -> None:
        if self.durability not in ("strict", "normal"):
            raise InvalidInput(
                f"durability must be 'strict' or 'normal', found {self.durability!r}"
            )
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name != "durability" and not value > 0:
                raise InvalidInput(f"LogConfig.{field.name} must be > 0, found {value!r}")
        if self.wal_checkpoint_bytes > self.wal_max_bytes:
            raise InvalidInput(
                "LogConfig.wal_checkpoint_bytes must not exceed wal_max_bytes, found "
                f"{self.wal_checkpoint_bytes} > {self.wal_max_bytes}"
            )

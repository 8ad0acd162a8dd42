"""A small Server-Sent Events parser over an httpx streaming response."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class SseMessage:
    event: str
    data: str
    id: str | None

    @property
    def json(self) -> Any:
        return json.loads(self.data)

    @property
    def position(self) -> int:
        assert self.id is not None, f"{self.event} message has no id"
        return int(self.id)


def sse_messages(response: httpx.Response) -> Iterator[SseMessage]:
    """Messages as they arrive; comments (keep-alive pings) are skipped."""
    event: str = "message"
    ident: str | None = None
    data: list[str] = []
    for line in response.iter_lines():
        if line == "":
            if data:
                yield SseMessage(event, "\n".join(data), ident)
            event, ident, data = "message", None, []
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)
            elif field == "id":
                ident = value

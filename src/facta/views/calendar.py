"""Calendar buckets in a time zone: floors and steps of 1h, 1d, 1w (from Monday) and 1mo.

Bucket starts are instants (epoch seconds); their alignment is local. A day in a zone with
daylight saving lasts 23 or 25 hours, so buckets are stepped on the local calendar, never by a
fixed number of seconds.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

WIDTHS: Final = ("1h", "1d", "1w", "1mo")


def coarser_or_equal(wanted: str, width: str) -> bool:
    """Whether ``wanted`` buckets are unions of ``width`` buckets (weeks and months do not nest)."""
    if wanted == width:
        return True
    nests = {"1h": {"1d", "1w", "1mo"}, "1d": {"1w", "1mo"}, "1w": set(), "1mo": set()}
    return wanted in nests[width]


def floor(instant: int, width: str, zone: str) -> int:
    """The start of the ``width`` bucket holding ``instant``, aligned in ``zone``."""
    tz = ZoneInfo(zone)
    local = datetime.fromtimestamp(instant, UTC).astimezone(tz)
    if width == "1h":
        start = local.replace(minute=0, second=0, microsecond=0)
        return int(start.timestamp())
    day = local.replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
    if width == "1w":
        day -= timedelta(days=day.weekday())
    elif width == "1mo":
        day = day.replace(day=1)
    return int(day.replace(tzinfo=tz).timestamp())


def step(start: int, width: str, zone: str) -> int:
    """The start of the bucket after the one starting at ``start``."""
    if width == "1h":
        return start + 3600
    tz = ZoneInfo(zone)
    local = datetime.fromtimestamp(start, UTC).astimezone(tz).replace(tzinfo=None)
    if width == "1d":
        following = local + timedelta(days=1)
    elif width == "1w":
        following = local + timedelta(days=7)
    else:
        year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
        following = local.replace(year=year, month=month)
    return int(following.replace(tzinfo=tz).timestamp())


def starts(first: int, end: int, width: str, zone: str) -> list[int]:
    """Every bucket start from ``floor(first)`` up to (not including) ``end``."""
    found = []
    current = floor(first, width, zone)
    while current < end:
        found.append(current)
        current = step(current, width, zone)
    return found

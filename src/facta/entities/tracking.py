"""What operators see of processors: status from tracking records and facts, and skipping.

A processor's checkpoint and state live in the log's ``tracking`` table; its failures and
skips are events of its own stream ``processor-<name>``. Nothing here needs the processor to
be running: status is read from the log file.
"""

from __future__ import annotations

import msgspec

from facta.log.errors import InvalidInput
from facta.log.event import NewEvent, StreamAppend, Tracking
from facta.log.sqlite import SqliteLog

_LAST = 2**62


class ProcessorStatus(msgspec.Struct, frozen=True):
    name: str
    state: str  # "ok" or "failed"
    checkpoint: int
    lag: int
    failed_at: int | None
    last_error: str | None


def processor_statuses(log: SqliteLog) -> list[ProcessorStatus]:
    """Every processor with a tracking record: state, checkpoint, lag (events), last error."""
    head = log.head_sync()
    out = []
    for name in log.tracking_names_sync():
        tracking = log.tracking_sync(name)
        assert tracking is not None
        facts = log.read_stream_sync(
            f"processor-{name}", from_version=_LAST, backward=True, limit=50
        )
        failure = next((e for e in facts if e.type == "ProcessorFailed"), None)
        failed_at = None
        if failure is not None and int(failure.data["position"]) > tracking.position:
            failed_at = int(failure.data["position"])
        out.append(
            ProcessorStatus(
                name,
                "failed" if failed_at is not None else "ok",
                tracking.position,
                max(0, head - tracking.position),
                failed_at,
                None if failure is None else str(failure.data.get("error")),
            )
        )
    return out


def skip(log: SqliteLog, name: str, position: int) -> Tracking:
    """Move processor ``name`` past ``position`` (recorded as a ``ProcessorSkipped`` fact)."""
    current = log.tracking_sync(name)
    if current is None:
        raise InvalidInput(f"no processor named {name!r} has a tracking record in {log.path}")
    if position <= current.position:
        raise InvalidInput(
            f"processor {name!r} is at position {current.position}; skip needs a later "
            f"position, found {position}"
        )
    head = log.head_sync()
    if position > head:
        raise InvalidInput(f"skip position {position} is past the log's head ({head})")
    fact = NewEvent(type="ProcessorSkipped", data={"from": current.position, "to": position})
    moved = Tracking(name, position, current.state, current.position)
    log.append_many_sync([StreamAppend(f"processor-{name}", (fact,))], tracking=moved)
    return moved

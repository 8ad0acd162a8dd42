"""Causality: the tree of events a command or event set off, found through indexes.

Every event the runtime writes carries ``causation_id`` (the command, or the event, that caused
it) and ``correlation_id`` (the root of its chain). A trace looks the id up by event id (unique
index), takes the chain's correlation id, and reads the whole chain through the
``(correlation_id, causation_id)`` index — never a scan of the log.
"""

from __future__ import annotations

import dataclasses
import json

from facta.log.errors import InvalidInput
from facta.log.event import RecordedEvent
from facta.log.sqlite import SqliteLog


@dataclasses.dataclass(slots=True)
class TraceNode:
    id: str
    event: RecordedEvent | None  # None: a command (only known by its id)
    children: list[TraceNode] = dataclasses.field(default_factory=list)


def trace(log: SqliteLog, ident: str) -> TraceNode:
    """The causal tree containing ``ident`` (a command id or an event id), from its root."""
    found = log.events_by_id_sync([ident])
    if found:
        correlation = found[0].correlation_id or str(found[0].id)
        chain = log.correlated_sync(correlation) or found
    else:
        correlation = ident
        chain = log.correlated_sync(ident)
        if not chain:  # a command that is not a chain's root: found by causation id
            caused = log.caused_by_sync([ident])
            if caused and caused[0].correlation_id:
                correlation = caused[0].correlation_id
                chain = log.correlated_sync(correlation)
            else:
                chain = caused
    if not chain:
        raise InvalidInput(f"no event or command with id {ident!r} in {log.path}")
    nodes: dict[str, TraceNode] = {str(e.id): TraceNode(str(e.id), e) for e in chain}
    root = nodes.get(correlation) or TraceNode(correlation, None)
    for event in chain:
        node = nodes[str(event.id)]
        if node is root:
            continue
        parent_id = event.causation_id or correlation
        parent = nodes.get(parent_id)
        if parent is None:
            if parent_id == root.id:
                parent = root
            else:  # a command inside the chain: hang it under the root
                parent = TraceNode(parent_id, None)
                nodes[parent_id] = parent
                root.children.append(parent)
        parent.children.append(node)
    return root


def render(node: TraceNode, marked: str | None = None) -> str:
    """The tree as text, one line per command or event."""
    lines: list[str] = []
    _render(node, "", "", lines, marked)
    return "\n".join(lines)


def _label(node: TraceNode, marked: str | None) -> str:
    mark = "  <==" if marked is not None and marked == node.id else ""
    event = node.event
    if event is None:
        return f"command {node.id}{mark}"
    data = json.dumps(event.data, sort_keys=True, separators=(",", ":"))
    if len(data) > 80:
        data = data[:77] + "..."
    return f"#{event.position} {event.stream} v{event.version} {event.type} {data}{mark}"


def _render(node: TraceNode, first: str, rest: str, lines: list[str], marked: str | None) -> None:
    lines.append(first + _label(node, marked))
    for index, child in enumerate(node.children):
        last = index == len(node.children) - 1
        _render(
            child,
            rest + ("└── " if last else "├── "),
            rest + ("    " if last else "│   "),
            lines,
            marked,
        )

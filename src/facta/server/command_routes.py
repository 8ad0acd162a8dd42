"""HTTP routes of entities: send a command to one entity, read an entity's state.

``POST /entities/{kind}/{id}/commands`` with ``{"command": "Withdraw", "data": {...},
"command_id": "..."}`` builds the command registered under that name (see
:mod:`facta.server.entity_host`), lets the entity decide, and answers the append (200), the
refusal (409 ``refused``, with the domain error's class and arguments) or the problem. The same
``command_id`` again answers the recorded result without deciding again.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from facta.entities.errors import ConcurrencyConflict, DomainError, Overloaded, ReentrantSend
from facta.entities.outcome import refusal
from facta.server.auth import Access, requires
from facta.server.entity_host import EntityHost, ServedKind
from facta.server.problems import LOG_ERRORS, ApiError, from_log_error, unavailable
from facta.server.state import server_state

router = APIRouter(prefix="/entities", tags=["entities"])
_encoder = msgspec.json.Encoder()


class CommandIn(BaseModel):
    """A command by its registered name, its fields, and an optional idempotency id."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"command": "Deposit", "data": {"amount": 10}}]},
    )
    command: Annotated[str, Field(min_length=1, max_length=200)]
    data: dict[str, Any] = Field(default_factory=dict)
    command_id: Annotated[str | None, Field(min_length=1, max_length=200)] = None
    timeout: Annotated[float | None, Field(gt=0, le=60)] = None


KindName = Annotated[
    str, Path(description="a served kind", openapi_examples={"a kind": {"value": "account"}})
]
EntityId = Annotated[
    str, Path(description="the entity's id", openapi_examples={"an id": {"value": "a-1"}})
]


class AcceptedOut(BaseModel):
    command_id: str | None
    stream: str
    version: int
    first_position: int | None
    last_position: int | None
    replayed: bool


def _host(request: Request) -> EntityHost:
    host = server_state(request).entities
    if host is None:
        raise ApiError(
            404,
            "no_entities",
            "this server serves no entity kinds: start it with --module (a module defining KINDS)",
        )
    return host


def _served(host: EntityHost, kind: str) -> ServedKind:
    served = host.kinds.get(kind)
    if served is None:
        raise ApiError(
            404,
            "unknown_kind",
            f"no entity kind {kind!r} is served (kinds: {', '.join(sorted(host.kinds)) or 'none'})",
            kind=kind,
        )
    return served


@router.post(
    "/{kind}/{entity_id}/commands",
    summary="Send a command to one entity (decided, then appended atomically)",
    response_model=None,
    responses={200: {"model": AcceptedOut}},
    dependencies=[requires(Access.APPEND)],
)
async def send_command(
    kind: KindName, entity_id: EntityId, body: CommandIn, request: Request
) -> Response:
    host = _host(request)
    served = _served(host, kind)
    command_type = served.commands.get(body.command)
    if command_type is None:
        raise ApiError(
            400,
            "unknown_command",
            f"kind {kind!r} takes no command {body.command!r} "
            f"(commands: {', '.join(sorted(served.commands)) or 'none'})",
            command=body.command,
        )
    try:
        command = msgspec.convert(body.data, command_type)
    except msgspec.ValidationError as exc:
        raise ApiError(
            422, "invalid_command", f"{body.command}: {exc}", command=body.command
        ) from None
    state = server_state(request)
    try:
        accepted = await host.runtime.entity(served.kind, entity_id).send(
            command, command_id=body.command_id, timeout=body.timeout
        )
    except DomainError as exc:
        recorded = refusal(exc)
        raise ApiError(
            409,
            "refused",
            f"{kind} {entity_id!r} refused {body.command}: "
            f"{recorded['message'] or recorded['error']}",
            refusal=recorded["error"],
            args=recorded["args"],
            replayed=exc.replayed,
        ) from None
    except ConcurrencyConflict as exc:
        raise unavailable("concurrency_conflict", str(exc), state.config.retry_after) from None
    except Overloaded as exc:
        raise unavailable("overloaded", str(exc), state.config.retry_after) from None
    except ReentrantSend as exc:
        raise ApiError(409, "reentrant_send", str(exc)) from None
    except LOG_ERRORS as exc:
        raise from_log_error(exc, retry_after=state.config.retry_after) from None
    return Response(_encoder.encode(accepted), media_type="application/json")


@router.get(
    "/{kind}/{entity_id}",
    summary="An entity's state, caught up with the log",
    dependencies=[requires(Access.READ)],
)
async def entity_state(kind: KindName, entity_id: EntityId, request: Request) -> Response:
    host = _host(request)
    served = _served(host, kind)
    try:
        ref = host.runtime.entity(served.kind, entity_id)
        value = await ref.state()
        version = await ref.version()
    except LOG_ERRORS as exc:
        raise from_log_error(exc, retry_after=server_state(request).config.retry_after) from None
    body = {"kind": kind, "id": entity_id, "version": version, "state": value}
    try:
        encoded = _encoder.encode(msgspec.to_builtins(body))
    except TypeError:
        encoded = _encoder.encode({**body, "state": repr(value)})
    return Response(encoded, media_type="application/json")

"""Typed events: registered names, schema versions and upcasters.

A type is registered under an explicit name (never its Python class name, which refactoring
changes) and a schema version stored with every event. Decoding runs upcasters
``(name, v) -> (name', v + 1)`` until the registered version is reached, then converts the data
into the registered class. An unregistered type decodes as the plain :class:`RecordedEvent`.

>>> types = EventTypes()
>>> @types.register("AccountOpened", version=2)
... class AccountOpened(msgspec.Struct):
...     owner: str
...     currency: str
>>> types.upcaster("AccountOpened", 1)(lambda data: {**data, "currency": "EUR"})
>>> types.new_event(AccountOpened("ada", "GBP")).data
{'owner': 'ada', 'currency': 'GBP'}
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import msgspec

from facta.log.errors import InvalidInput
from facta.log.event import NewEvent, RecordedEvent, check_event_type

T = TypeVar("T")
Upcast = Callable[[dict[str, Any]], dict[str, Any]]


class EventTypes:
    """A registry of typed events for one application."""

    def __init__(self) -> None:
        self._by_name: dict[str, tuple[type[Any], int]] = {}
        self._by_class: dict[type[Any], tuple[str, int]] = {}
        self._upcasters: dict[tuple[str, int], tuple[str, Upcast]] = {}

    def register(self, name: str, *, version: int = 1) -> Callable[[type[T]], type[T]]:
        """Register a msgspec Struct or dataclass under ``name`` at schema ``version``."""
        check_event_type(name)
        if version < 1:
            raise InvalidInput(f"event type {name!r}: version must be >= 1, found {version}")

        def decorate(cls: type[T]) -> type[T]:
            if name in self._by_name and self._by_name[name][0] is not cls:
                raise InvalidInput(
                    f"event type {name!r} is already registered to {self._by_name[name][0]!r}"
                )
            self._by_name[name] = (cls, version)
            self._by_class[cls] = (name, version)
            return cls

        return decorate

    def upcaster(
        self, name: str, from_version: int, *, to_name: str | None = None
    ) -> Callable[[Upcast], None]:
        """Register ``fn(data) -> data`` turning ``(name, from_version)`` into
        ``(to_name or name, from_version + 1)``."""
        check_event_type(name)

        def decorate(fn: Upcast) -> None:
            key = (name, from_version)
            if key in self._upcasters:
                raise InvalidInput(f"an upcaster for {name!r} v{from_version} already exists")
            self._upcasters[key] = (to_name or name, fn)

        return decorate

    def name_of(self, cls: type[Any]) -> tuple[str, int]:
        try:
            return self._by_class[cls]
        except KeyError:
            raise InvalidInput(
                f"{cls.__name__} is not a registered event type; use @types.register(name)"
            ) from None

    def new_event(self, value: Any, *, metadata: dict[str, Any] | None = None) -> NewEvent:
        """Turn a registered typed event into a :class:`NewEvent` ready to append."""
        name, version = self.name_of(type(value))
        data = msgspec.to_builtins(value)
        if not isinstance(data, dict):
            raise InvalidInput(f"event {name!r} must encode to a JSON object, found {data!r}")
        return NewEvent(type=name, data=data, metadata=metadata or {}, schema_version=version)

    def upcast(
        self, name: str, version: int, data: dict[str, Any]
    ) -> tuple[str, int, dict[str, Any]]:
        """Apply upcasters until no more apply; returns the final (name, version, data)."""
        steps = 0
        while (name, version) in self._upcasters:
            name, fn = self._upcasters[(name, version)]
            data = fn(data)
            version += 1
            steps += 1
            if steps > 1000:
                raise InvalidInput(f"upcaster chain for {name!r} does not end")
        return name, version, data

    def decode(self, event: RecordedEvent) -> Any:
        """The typed value of ``event``, or ``event`` itself when its type is not registered.

        Raises :class:`InvalidInput` only if a registered type's data does not fit its class.
        """
        name, version, data = self.upcast(event.type, event.schema_version, event.data)
        registered = self._by_name.get(name)
        if registered is None or registered[1] != version:
            if (name, version, data) == (event.type, event.schema_version, event.data):
                return event
            return msgspec.structs.replace(event, type=name, schema_version=version, data=data)
        try:
            return msgspec.convert(data, registered[0])
        except msgspec.ValidationError as exc:
            raise InvalidInput(
                f"event at position {event.position} ({name} v{version}) does not fit "
                f"{registered[0].__name__}: {exc}"
            ) from None

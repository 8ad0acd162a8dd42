"""Stream names built from a row's columns: ``flight-{carrier}{flight}-{year}-{month}-{day}``."""

from __future__ import annotations

import operator
import string
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from facta.log import InvalidInput


class RowError(Exception):
    """One row cannot become an event; the message says why (without the line number)."""


@dataclass(frozen=True, slots=True)
class StreamTemplate:
    """A parsed stream-name template: literal text and ``{column}`` fields, nothing else.

    >>> StreamTemplate.parse("flight-{carrier}{flight}").render({"carrier": "UA", "flight": 7})
    'flight-UA7'
    """

    text: str
    parts: tuple[tuple[str, str | None], ...]

    @classmethod
    def parse(cls, text: str) -> StreamTemplate:
        parts: list[tuple[str, str | None]] = []
        try:
            parsed = list(string.Formatter().parse(text))
        except ValueError as exc:
            raise InvalidInput(f"stream template {text!r} is not valid: {exc}") from None
        for literal, field, spec, conversion in parsed:
            if field is not None and (field == "" or spec or conversion):
                raise InvalidInput(
                    f"stream template {text!r}: expected fields of the form {{column}}, "
                    f"found {{{field}{'!' + conversion if conversion else ''}"
                    f"{':' + spec if spec else ''}}}"
                )
            parts.append((literal, field))
        if not any(field for _, field in parts):
            raise InvalidInput(
                f"stream template {text!r} names no column: every row would go to one stream "
                "(expected at least one {column})"
            )
        return cls(text, tuple(parts))

    @property
    def columns(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for _, field in self.parts:
            if field is not None:
                seen.setdefault(field, None)
        return tuple(seen)

    def check_columns(self, available: Iterable[str]) -> None:
        """Refuse a template that names a column the file does not have."""
        have = list(available)
        missing = [c for c in self.columns if c not in set(have)]
        if missing:
            names = ", ".join(repr(c) for c in missing)
            raise InvalidInput(
                f"stream template {self.text!r} names {names}, not a column of the file "
                f"(columns: {', '.join(have) or 'none'})"
            )

    def compile(self) -> Callable[[Mapping[str, Any]], str]:
        """A faster :meth:`render` for the common case of text and int columns."""
        fields = [field for _, field in self.parts if field is not None]
        pattern = "".join(
            literal.replace("{", "{{").replace("}", "}}") + ("" if field is None else "{}")
            for literal, field in self.parts
        )
        getter = operator.itemgetter(*fields)
        single = len(fields) == 1
        careful = self.render

        def render(row: Mapping[str, Any]) -> str:
            try:
                values = getter(row)
            except KeyError:
                return careful(row)
            if single:
                values = (values,)
            for value in values:
                kind = type(value)
                if kind is not int and (kind is not str or not value):
                    return careful(row)
            return pattern.format(*values)

        return render

    def render(self, row: Mapping[str, Any]) -> str:
        pieces = []
        for literal, field in self.parts:
            pieces.append(literal)
            if field is not None:
                if field not in row:
                    raise RowError(f"column {field!r} is missing (the stream template needs it)")
                pieces.append(_text(field, row[field]))
        return "".join(pieces)


def _text(column: str, value: Any) -> str:
    kind = type(value)
    if kind is str:
        if not value:
            raise RowError(f"column {column!r} is empty (the stream template needs it)")
        return str(value)
    if kind is int:
        return str(value)
    if value is None:
        raise RowError(f"column {column!r} is null (the stream template needs it)")
    if kind is bool:
        return "true" if value else "false"
    if kind is float:
        return repr(value)
    raise RowError(
        f"column {column!r} holds a {kind.__name__}, expected text or a number for the stream name"
    )

"""Canonical JSON for event bodies and the request hash behind idempotency keys.

Event data and metadata are stored as JSON with sorted keys, so equal objects are equal bytes
and a request's hash does not depend on the caller's key order. Non-finite numbers are refused:
JSON has no spelling for them and msgspec would silently write ``null``.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import msgspec

from facta.log.errors import InvalidInput

_encoder = msgspec.json.Encoder(order="sorted")
_decoder = msgspec.json.Decoder()


def encode_json(value: Any) -> bytes:
    """Encode ``value`` canonically (sorted keys, compact)."""
    return _encoder.encode(value)


def decode_json(raw: bytes | str) -> Any:
    return _decoder.decode(raw)


def find_non_finite(value: Any, path: str = "") -> str | None:
    """Return the path of the first NaN or infinity inside ``value``, or None."""
    kind = type(value)
    if kind is float:
        return None if math.isfinite(value) else (path or "<value>")
    if kind is dict:
        for key, item in value.items():
            if type(item) in (float, dict, list, tuple):
                found = find_non_finite(item, f"{path}.{key}" if path else str(key))
                if found is not None:
                    return found
        return None
    if kind is list or kind is tuple:
        for index, item in enumerate(value):
            found = find_non_finite(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def encode_object(value: object, what: str) -> bytes:
    """Encode a JSON object (a ``dict`` with string keys), refusing anything else."""
    if not isinstance(value, dict):
        raise InvalidInput(f"{what} must be a JSON object (dict), found {type(value).__name__}")
    bad = find_non_finite(value)
    if bad is not None:
        raise InvalidInput(f"{what} holds a non-finite number at {bad!r}: JSON has no NaN/Infinity")
    try:
        return _encoder.encode(value)
    except (TypeError, msgspec.EncodeError) as exc:
        raise InvalidInput(f"{what} is not JSON-serialisable: {exc}") from None


def request_digest(parts: Any) -> bytes:
    """SHA-256 over the canonical encoding of an append request."""
    return hashlib.sha256(_encoder.encode(parts)).digest()

"""UUIDv7 event ids: time-ordered, so ids of nearby events sit near each other in an index."""

from __future__ import annotations

import os
import threading
import time
from uuid import UUID

_lock = threading.Lock()
_last_ms = 0
_counter = 0
# Random bits come from the OS in blocks of 512 ids: one system call per block, not per id.
_BLOCK = 8 * 512
_pool = b""
_offset = _BLOCK


def _forget_pool() -> None:
    # A forked child must not draw the parent's remaining random bytes.
    global _pool, _offset
    _pool, _offset = b"", _BLOCK


if hasattr(os, "register_at_fork"):  # POSIX; Windows has no fork
    os.register_at_fork(after_in_child=_forget_pool)


def _uuid7_int() -> int:
    global _last_ms, _counter, _pool, _offset
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            _counter += 1
            if _counter > 0xFFF:  # counter exhausted: borrow the next millisecond
                _last_ms += 1
                _counter = 0
            ms = _last_ms
        else:
            _last_ms = ms
            _counter = 0
        counter = _counter
        if _offset >= _BLOCK:
            _pool, _offset = os.urandom(_BLOCK), 0
        rand = int.from_bytes(_pool[_offset : _offset + 8], "big") & 0x3FFF_FFFF_FFFF_FFFF
        _offset += 8
    return (ms & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | rand


def uuid7() -> UUID:
    """A UUIDv7 (RFC 9562) with a 12-bit counter keeping ids monotonic within a millisecond."""
    return UUID(int=_uuid7_int())


def uuid7_text() -> str:
    """:func:`uuid7` in its canonical text form, without building a ``UUID`` object."""
    h = f"{_uuid7_int():032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

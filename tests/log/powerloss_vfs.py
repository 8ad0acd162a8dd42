"""A SQLite VFS that can lose power: writes not yet synced live only in memory until a cut.

The shim inherits locking and the shared-memory WAL index from the default VFS, and models the
operating system's page cache on top of it:

- every handle of one path sees the same contents (the cache), held in memory;
- ``xWrite`` and ``xTruncate`` change the cache and are queued as *unsynced* operations;
- ``xSync`` of a file writes that file's queued operations, in order, to the real file: from then
  on they survive a power cut;
- :meth:`PowerLossVFS.power_cut` (after every connection is closed) persists, per file, none,
  all or a random prefix of the unsynced operations — the last one possibly torn in the middle
  of a write — discards the rest and deletes the ``-shm`` files: the shared memory does not
  survive a reboot and SQLite rebuilds the WAL index from the WAL.

A cut can be armed to happen at an exact I/O operation (the n-th write, the next sync of the
WAL, ...). The triggering operation fails with an I/O error, a triggering write may be torn,
and every later write, truncate, sync or delete fails: the machine is off. Reads go on working,
so the dead process can still close its connections.

With ``full_sync_only=True`` it behaves like macOS, where ``fsync()`` stops at the drive's
volatile cache: only a sync carrying ``SQLITE_SYNC_FULL`` (SQLite's ``fullfsync`` and
``checkpoint_fullfsync``, i.e. ``F_FULLFSYNC``) makes writes durable.

Python VFS files offer no memory mapping, so SQLite reads every page through ``xRead``, from
the cache.

What it does not model: the real files are never fsynced (the cut is simulated, so the page
cache of the test machine is as good as a disk), a created or deleted file's directory entry is
durable at once, and within one file the persisted writes are always a prefix of issue order
(a drive may reorder them; SQLite syncs before every write whose order matters).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import threading
from collections.abc import Callable
from typing import Any, Literal

import apsw

_SIZE_HINT = 5  # SQLITE_FCNTL_SIZE_HINT: the unix VFS would grow the real file at once
_CHUNK_SIZE = 6  # SQLITE_FCNTL_CHUNK_SIZE: likewise

CutPolicy = Literal["none", "all", "prefix"]


@dataclasses.dataclass(frozen=True, slots=True)
class IoOp:
    """One mutating operation, as a trigger sees it before it runs."""

    kind: Literal["write", "truncate", "sync"]
    path: str
    number: int  # 1-based count of mutating operations since the VFS was armed


@dataclasses.dataclass(slots=True)
class _Write:
    offset: int
    data: bytes


@dataclasses.dataclass(slots=True)
class _Truncate:
    size: int


_Op = _Write | _Truncate


@dataclasses.dataclass(slots=True)
class _File:
    """The cached contents of one path and the operations not yet on the real file."""

    path: str
    cache: bytearray
    unsynced: list[_Op] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True, slots=True)
class CutReport:
    """What one power cut kept: per path, unsynced operations persisted out of those queued."""

    policy: CutPolicy
    persisted: dict[str, tuple[int, int]]
    torn: tuple[str, ...]

    @property
    def lost_operations(self) -> int:
        return sum(total - kept for kept, total in self.persisted.values())


class PowerCutError(apsw.IOError):
    """An I/O operation attempted while (or as) the power is cut."""


class PowerLossVFS(apsw.VFS):
    """Register with a unique ``name``; pass that name as ``SqliteLog(..., vfs=name)``."""

    def __init__(self, name: str, *, full_sync_only: bool = False) -> None:
        super().__init__(name, base="")
        self.name = name
        # macOS: fsync() leaves the data in the drive's volatile cache, only F_FULLFSYNC (what
        # SQLite asks for with SQLITE_SYNC_FULL) makes it durable
        self.full_sync_only = full_sync_only
        self.partial_syncs = 0
        self._lock = threading.RLock()
        self._files: dict[str, _File] = {}
        self._handles = 0
        self._trigger: Callable[[IoOp], bool] | None = None
        self._ops = 0
        self.is_cut = False
        self.cut_at: IoOp | None = None
        self.syncs = 0
        self.writes = 0

    # -- arming and cutting ---------------------------------------------------------------------

    def arm(self, trigger: Callable[[IoOp], bool]) -> None:
        """Cut the power at the first mutating operation for which ``trigger`` returns True."""
        with self._lock:
            self._trigger = trigger
            self._ops = 0

    def arm_after(self, operations: int) -> None:
        """Cut the power at the ``operations``-th write, truncate or sync from now."""
        self.arm(lambda op: op.number >= operations)

    def cut(self) -> None:
        """Cut the power now (from any thread): every later mutating operation fails."""
        with self._lock:
            self.is_cut = True
            self._trigger = None

    def unsynced_operations(self) -> int:
        with self._lock:
            return sum(len(f.unsynced) for f in self._files.values())

    def power_cut(self, rng: random.Random, policy: CutPolicy | None = None) -> CutReport:
        """Decide what of the unsynced writes reached the disk, write it there, forget the rest.

        Every connection using this VFS must be closed first (a rebooted machine has no open
        files). ``policy`` defaults to a random choice: none 20 %, all 20 %, a prefix 60 %; a
        prefix ends with a torn write half of the time.
        """
        with self._lock:
            if self._handles:
                raise RuntimeError(
                    f"power_cut needs every file closed, found {self._handles} open handle(s)"
                )
            self.is_cut = True
            chosen = policy or _random_policy(rng)
            persisted: dict[str, tuple[int, int]] = {}
            torn: list[str] = []
            for state in self._files.values():
                total = len(state.unsynced)
                if not total:
                    continue
                if chosen == "none":
                    keep = 0
                elif chosen == "all":
                    keep = total
                else:
                    keep = rng.randint(0, total)
                ops = state.unsynced[:keep]
                if keep < total and chosen == "prefix" and rng.random() < 0.5:
                    partial = state.unsynced[keep]
                    if isinstance(partial, _Write) and len(partial.data) > 1:
                        cut_at = rng.randint(1, len(partial.data) - 1)
                        ops = [*ops, _Write(partial.offset, partial.data[:cut_at])]
                        torn.append(state.path)
                _apply_to_disk(state.path, ops)
                persisted[state.path] = (keep, total)
            for state in self._files.values():
                _remove(state.path + "-shm")
            self._files.clear()
            self.is_cut = False
            self.cut_at = None
            self._trigger = None
            return CutReport(chosen, persisted, tuple(torn))

    # -- the VFS --------------------------------------------------------------------------------

    def xOpen(self, name: str | apsw.URIFilename | None, flags: list[int]) -> apsw.VFSFile:
        if name is None:  # a temporary file: nothing to lose across a reboot
            return apsw.VFSFile("", name, flags)
        path = name.filename() if isinstance(name, apsw.URIFilename) else name
        return PowerLossFile(self, path, name, flags)

    def xDelete(self, filename: str, syncdir: bool) -> None:
        with self._lock:
            if self.is_cut:
                raise PowerCutError(f"power is cut: cannot delete {filename}")
            self._files.pop(filename, None)
        super().xDelete(filename, syncdir)

    # -- called by the files --------------------------------------------------------------------

    def _attach(self, path: str) -> _File:
        with self._lock:
            self._handles += 1
            state = self._files.get(path)
            if state is None:
                with open(path, "rb") as real:
                    state = _File(path, bytearray(real.read()))
                self._files[path] = state
            return state

    def _detach(self) -> None:
        with self._lock:
            self._handles -= 1

    def _check_power(self, kind: Literal["write", "truncate", "sync"], state: _File) -> bool:
        """Raise if the power is off; return True if this operation is the one that cuts it."""
        if self.is_cut:
            raise PowerCutError(f"power is cut: cannot {kind} {state.path}")
        if self._trigger is None:
            return False
        self._ops += 1
        op = IoOp(kind, state.path, self._ops)
        if self._trigger(op):
            self.is_cut = True
            self.cut_at = op
            self._trigger = None
            return True
        return False


class PowerLossFile(apsw.VFSFile):
    def __init__(
        self, vfs: PowerLossVFS, path: str, name: str | apsw.URIFilename, flags: list[int]
    ) -> None:
        super().__init__("", name, flags)
        self._vfs = vfs
        self._state = vfs._attach(path)
        self._closed = False

    def xRead(self, amount: int, offset: int) -> bytes:
        with self._vfs._lock:
            return bytes(self._state.cache[offset : offset + amount])

    def xWrite(self, data: Any, offset: int) -> None:
        vfs = self._vfs
        with vfs._lock:
            cutting = vfs._check_power("write", self._state)
            payload = bytes(data)
            self._state.unsynced.append(_Write(offset, payload))
            _write_into(self._state.cache, offset, payload)
            vfs.writes += 1
            if cutting:  # the write was under way: the cut may tear it
                raise PowerCutError(f"power cut while writing {self._state.path}")

    def xTruncate(self, newsize: int) -> None:
        vfs = self._vfs
        with vfs._lock:
            if vfs._check_power("truncate", self._state):
                raise PowerCutError(f"power cut before truncating {self._state.path}")
            self._state.unsynced.append(_Truncate(newsize))
            _truncate(self._state.cache, newsize)

    def xSync(self, flags: int) -> None:
        vfs = self._vfs
        with vfs._lock:
            if vfs._check_power("sync", self._state):
                raise PowerCutError(f"power cut before syncing {self._state.path}")
            if vfs.full_sync_only and flags & 0x0F != apsw.SQLITE_SYNC_FULL:
                vfs.partial_syncs += 1
                return
            state = self._state
            _apply_to_disk(state.path, state.unsynced)
            state.unsynced.clear()
            vfs.syncs += 1

    def xFileSize(self) -> int:
        with self._vfs._lock:
            return len(self._state.cache)

    def xFileControl(self, op: int, ptr: int) -> bool:
        if op in (_SIZE_HINT, _CHUNK_SIZE):
            return True  # sizes live in the cache; the real file grows only when synced
        return bool(super().xFileControl(op, ptr))

    def xClose(self) -> None:
        if not self._closed:
            self._closed = True
            self._vfs._detach()
        super().xClose()


def _random_policy(rng: random.Random) -> CutPolicy:
    draw = rng.random()
    return "none" if draw < 0.2 else "all" if draw < 0.4 else "prefix"


def _write_into(buffer: bytearray, offset: int, data: bytes) -> None:
    end = offset + len(data)
    if offset > len(buffer):
        buffer.extend(bytes(offset - len(buffer)))
    buffer[offset:end] = data


def _truncate(buffer: bytearray, size: int) -> None:
    if size < len(buffer):
        del buffer[size:]
    else:
        buffer.extend(bytes(size - len(buffer)))


def _apply_to_disk(path: str, ops: list[_Op]) -> None:
    if not ops:
        return
    with open(path, "r+b" if os.path.exists(path) else "w+b") as real:
        for op in ops:
            if isinstance(op, _Write):
                real.seek(op.offset)
                real.write(op.data)
            else:
                real.truncate(op.size)


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)

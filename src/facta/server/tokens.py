"""API tokens: scopes, salted scrypt hashes, and the store that checks a presented token.

A token looks like ``facta_<id>_<secret>``. The id is public and only selects the entry; the
secret is checked against a salted scrypt hash in constant time. Hash lines live in the
environment (``FACTA_TOKENS``) or in an untracked file — never in ``facta.toml``, which the
dashboard can rewrite. One line per token::

    <name> <id> <scope>[,<scope>…] scrypt:<n>:<r>:<p>:<salt>:<hash>

``admin`` implies every other scope; ``read`` and ``append`` are independent, so a sensor can
append without being able to read.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import os
import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

TOKENS_ENV: Final = "FACTA_TOKENS"
TOKENS_FILE_ENV: Final = "FACTA_TOKENS_FILE"
DEFAULT_TOKENS_FILE: Final = Path(".facta") / "tokens"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_TOKEN = re.compile(r"facta_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
# scrypt cost: about 16 MiB and tens of milliseconds per check; a verified token is cached.
_N, _R, _P = 2**14, 8, 1
_CACHE_SIZE = 1024


class Scope(enum.StrEnum):
    """What a token may do."""

    READ = "read"
    APPEND = "append"
    ADMIN = "admin"


class TokenConfigError(ValueError):
    """A token hash line could not be parsed; names the line and the problem."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who made a request: a token's name and scopes (``anonymous`` when reading is open)."""

    name: str
    scopes: frozenset[Scope]

    def allows(self, scope: Scope) -> bool:
        return scope in self.scopes or Scope.ADMIN in self.scopes


ANONYMOUS_READER: Final = Principal("anonymous", frozenset({Scope.READ}))


@dataclass(frozen=True, slots=True)
class TokenEntry:
    name: str
    token_id: str
    scopes: frozenset[Scope]
    n: int
    r: int
    p: int
    salt: bytes
    digest: bytes

    def matches(self, secret: str) -> bool:
        found = _scrypt(secret, self.salt, self.n, self.r, self.p)
        return hmac.compare_digest(found, self.digest)


@dataclass(frozen=True, slots=True)
class NewToken:
    """A freshly created token: show ``token`` once to its owner, store ``line``."""

    token: str
    line: str


def create_token(name: str, scopes: Iterable[Scope | str]) -> NewToken:
    """Create a random token and the hash line that lets a server accept it."""
    if _NAME.fullmatch(name) is None:
        raise TokenConfigError(
            f"token name {name!r}: expected 1-64 characters matching {_NAME.pattern}"
        )
    parsed = _parse_scopes(",".join(str(s) for s in scopes), where=f"token {name!r}")
    token_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    salt = secrets.token_bytes(16)
    digest = _scrypt(secret, salt, _N, _R, _P)
    scope_text = ",".join(sorted(s.value for s in parsed))
    line = f"{name} {token_id} {scope_text} scrypt:{_N}:{_R}:{_P}:{_b64(salt)}:{_b64(digest)}"
    return NewToken(token=f"facta_{token_id}_{secret}", line=line)


class TokenStore:
    """The tokens a server accepts. Thread-safe; successful checks are cached in memory."""

    def __init__(self, entries: Iterable[TokenEntry] = ()) -> None:
        self._by_id: dict[str, TokenEntry] = {}
        for entry in entries:
            if entry.token_id in self._by_id:
                raise TokenConfigError(f"token id {entry.token_id} appears twice")
            self._by_id[entry.token_id] = entry
        self._verified: OrderedDict[bytes, Principal] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._by_id)

    @classmethod
    def from_text(cls, text: str, *, source: str) -> TokenStore:
        """Parse hash lines (newline- or ``;``-separated; ``#`` starts a comment)."""
        entries = []
        for number, raw in enumerate(re.split(r"[\n;]", text), start=1):
            line = raw.split("#", 1)[0].strip()
            if line:
                entries.append(_parse_line(line, where=f"{source} entry {number}"))
        return cls(entries)

    @classmethod
    def from_environment(cls, tokens_file: Path | None = None) -> TokenStore:
        """Tokens from ``FACTA_TOKENS`` plus the file ``tokens_file`` (or ``FACTA_TOKENS_FILE``,
        else ``.facta/tokens``) when it exists."""
        text = os.environ.get(TOKENS_ENV, "")
        store_text = [(text, TOKENS_ENV)] if text.strip() else []
        path = tokens_file_path(tokens_file)
        if path.is_file():
            store_text.append((path.read_text(encoding="utf-8"), str(path)))
        elif tokens_file is not None:
            raise TokenConfigError(f"tokens file {tokens_file} does not exist")
        entries = [
            entry
            for body, source in store_text
            for entry in cls.from_text(body, source=source)._by_id.values()
        ]
        return cls(entries)

    def cached(self, token: str) -> Principal | None:
        """The principal of a token checked before, without hashing (cheap, for the event loop)."""
        with self._lock:
            cached = self._verified.get(_fingerprint(token))
            if cached is not None:
                self._verified.move_to_end(_fingerprint(token))
            return cached

    def authenticate(self, token: str) -> Principal | None:
        """The principal of ``token``, or None when it is unknown or wrong (slow: scrypt)."""
        fingerprint = _fingerprint(token)
        cached = self.cached(token)
        if cached is not None:
            return cached
        shape = _TOKEN.fullmatch(token)
        if shape is None:
            return None
        entry = self._by_id.get(shape.group(1))
        if entry is None or not entry.matches(shape.group(2)):
            return None
        principal = Principal(entry.name, entry.scopes)
        with self._lock:
            self._verified[fingerprint] = principal
            while len(self._verified) > _CACHE_SIZE:
                self._verified.popitem(last=False)
        return principal


def tokens_file_path(tokens_file: Path | None = None) -> Path:
    """The tokens file in use: the one given, else ``FACTA_TOKENS_FILE``, else ``.facta/tokens``."""
    return tokens_file or Path(os.environ.get(TOKENS_FILE_ENV, DEFAULT_TOKENS_FILE))


def readable_by_others(path: Path) -> bool:
    """True when a POSIX tokens file can be read by its group or by anyone (it should not)."""
    try:
        return os.name == "posix" and bool(path.stat().st_mode & 0o077)
    except OSError:
        return False


def _fingerprint(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "replace")).digest()


def _parse_line(line: str, *, where: str) -> TokenEntry:
    fields = line.split()
    if len(fields) != 4:
        raise TokenConfigError(
            f"{where}: expected '<name> <id> <scopes> scrypt:n:r:p:salt:hash', "
            f"found {len(fields)} fields"
        )
    name, token_id, scope_text, hashed = fields
    if _NAME.fullmatch(name) is None:
        raise TokenConfigError(f"{where}: invalid token name {name!r}")
    if re.fullmatch(r"[0-9a-f]{12}", token_id) is None:
        raise TokenConfigError(f"{where}: token id must be 12 hex digits, found {token_id!r}")
    parts = hashed.split(":")
    if len(parts) != 6 or parts[0] != "scrypt":
        raise TokenConfigError(f"{where}: expected scrypt:n:r:p:salt:hash, found {hashed[:20]!r}")
    try:
        n, r, p = (int(v) for v in parts[1:4])
        salt, digest = _unb64(parts[4]), _unb64(parts[5])
    except ValueError as exc:
        raise TokenConfigError(f"{where}: unreadable hash parameters ({exc})") from None
    return TokenEntry(name, token_id, _parse_scopes(scope_text, where=where), n, r, p, salt, digest)


def _parse_scopes(text: str, *, where: str) -> frozenset[Scope]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    known = {s.value for s in Scope}
    unknown = [s for s in names if s not in known]
    if unknown or not names:
        raise TokenConfigError(
            f"{where}: scopes must be a comma-separated subset of {sorted(known)}, found {text!r}"
        )
    return frozenset(Scope(s) for s in names)


def _scrypt(secret: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        secret.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=256 * n * r, dklen=32
    )


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))

"""The people who act for a member: its users, their roles and their API tokens.

The store is one JSON file in the member's home (``users.json``, owner-only 0600),
written atomically (temporary file, fsync, rename) under an exclusive lock
(``users.json.lock``) so two ``crosstrace user`` commands never lose each other's
change. The running node reads it and notices changes (its mtime and size, looked at
no more than once a second; ten times a second while tokens it does not know arrive, so
a user just added can act at once), so adding or revoking a user needs no restart.

A token is 32 random bytes, shown once as ``ct1_`` and their base64url; the store keeps
only its BLAKE2b-256 hash, and a presented token is looked up through the hash of what
was presented. Each user also gets ``actor``, 16 random bytes fixed at creation: the
pseudonymous id that the ledger records for what the user does. The member resolves it
to the person through this file; the other members only see that one officer acted.

File format (``version`` 1)::

    {"version": 1, "users": [{"name": "alice", "roles": ["investigator"],
      "token_hash": "<64 hex>", "actor": "<32 hex>", "created_ms": 1700000000000,
      "expires_ms": 1707776000000 | null, "revoked_ms": null | 1700000100000}]}
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from node.setup.keys import atomic_write

USERS_FILE = "users.json"
TOKEN_FILE = "token"
USER_ROLES = ("investigator", "approver", "reporter", "operator")
ACTOR_SIZE = 16
# The actor of what the node does by its own policy (answering a PSI run, say).
NODE_ACTOR = bytes(ACTOR_SIZE)
TOKEN_PREFIX = "ct1_"
_TOKEN_BYTES = 32
_NAME = re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?")
_FORMAT = 1
# Which of the member's genesis roles a user role needs (any one of them).
ROLE_NEEDS: dict[str, tuple[str, ...]] = {
    "investigator": ("investigator", "auditor"),
    "approver": ("approver",),
    "reporter": ("reporter",),
    "operator": (),
}
_RELOAD_EVERY_S = 1.0
# A token it does not know may be a user added a moment ago: look sooner, still bounded.
_RELOAD_UNKNOWN_S = 0.1


class UserError(ValueError):
    """A user that cannot be created, found or changed as asked; the message says why."""


@dataclass(frozen=True)
class User:
    name: str
    roles: tuple[str, ...]
    token_hash: bytes
    actor: bytes
    created_ms: int
    expires_ms: int | None
    revoked_ms: int | None

    def json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "roles": list(self.roles),
            "token_hash": self.token_hash.hex(),
            "actor": self.actor.hex(),
            "created_ms": self.created_ms,
            "expires_ms": self.expires_ms,
            "revoked_ms": self.revoked_ms,
        }


def hash_token(token: str) -> bytes | None:
    """The stored hash of ``token``, or None if it is not a token's shape."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    text = token[len(TOKEN_PREFIX) :]
    if len(text) != 43 or not re.fullmatch(r"[A-Za-z0-9_-]+", text):
        return None
    raw = base64.urlsafe_b64decode(text + "=")
    return hashlib.blake2b(raw, digest_size=32).digest()


def new_token() -> tuple[str, bytes]:
    raw = secrets.token_bytes(_TOKEN_BYTES)
    token = TOKEN_PREFIX + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    return token, hashlib.blake2b(raw, digest_size=32).digest()


def check_roles(roles: Iterable[str], member_roles: Iterable[str]) -> tuple[str, ...]:
    """The user roles in their canonical order; refuses an unknown role or one the
    member's genesis roles do not allow, with the reason."""
    wanted = set(roles)
    held = set(member_roles)
    if not wanted:
        raise UserError("a user needs at least one role")
    for role in sorted(wanted):
        if role not in USER_ROLES:
            raise UserError(f"unknown role {role!r}; roles are {', '.join(USER_ROLES)}")
        needs = ROLE_NEEDS[role]
        if needs and not held & set(needs):
            raise UserError(
                f"role {role!r} needs the member to hold the {' or '.join(needs)} role in "
                f"the genesis; it holds {', '.join(sorted(held)) or 'none'}"
            )
    return tuple(r for r in USER_ROLES if r in wanted)


def _decode(data: bytes, path: Path) -> list[User]:
    try:
        obj = json.loads(data)
        if obj.get("version") != _FORMAT:
            raise UserError(f"{path}: unknown user store version {obj.get('version')!r}")
        return [
            User(
                name=str(u["name"]),
                roles=tuple(str(r) for r in u["roles"]),
                token_hash=bytes.fromhex(u["token_hash"]),
                actor=bytes.fromhex(u["actor"]),
                created_ms=int(u["created_ms"]),
                expires_ms=None if u["expires_ms"] is None else int(u["expires_ms"]),
                revoked_ms=None if u["revoked_ms"] is None else int(u["revoked_ms"]),
            )
            for u in obj["users"]
        ]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        if isinstance(exc, UserError):
            raise
        raise UserError(f"{path}: not a user store ({type(exc).__name__})") from None


def read_users(home: Path) -> list[User]:
    path = home / USERS_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    return _decode(data, path)


@contextlib.contextmanager
def _locked(home: Path) -> Iterator[None]:
    fd = os.open(home / f"{USERS_FILE}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write(home: Path, users: list[User]) -> None:
    data = json.dumps({"version": _FORMAT, "users": [u.json() for u in users]}, indent=1)
    atomic_write(home / USERS_FILE, data.encode() + b"\n", mode=0o600)


def add_user(
    home: Path,
    name: str,
    roles: Iterable[str],
    member_roles: Iterable[str],
    *,
    expires_in_ms: int | None = None,
    now_ms: int | None = None,
) -> tuple[User, str]:
    """Create a user; returns it and its token (shown once, never stored)."""
    if not _NAME.fullmatch(name):
        raise UserError(
            "a user name is 1 to 64 lower-case letters, digits, '.', '_' or '-', "
            "starting and ending with a letter or digit"
        )
    checked = check_roles(roles, member_roles)
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if expires_in_ms is not None and expires_in_ms <= 0:
        raise UserError("the expiry must be in the future")
    with _locked(home):
        users = read_users(home)
        if any(u.name == name for u in users):
            raise UserError(f"user {name!r} already exists")
        token, digest = new_token()
        user = User(
            name=name,
            roles=checked,
            token_hash=digest,
            actor=secrets.token_bytes(ACTOR_SIZE),
            created_ms=now,
            expires_ms=None if expires_in_ms is None else now + expires_in_ms,
            revoked_ms=None,
        )
        _write(home, [*users, user])
    return user, token


def revoke_user(home: Path, name: str, *, now_ms: int | None = None) -> User:
    now = int(time.time() * 1000) if now_ms is None else now_ms
    with _locked(home):
        users = read_users(home)
        for i, user in enumerate(users):
            if user.name == name:
                if user.revoked_ms is not None:
                    raise UserError(f"user {name!r} is already revoked")
                users[i] = replace(user, revoked_ms=now)
                _write(home, users)
                return users[i]
    raise UserError(f"no user {name!r}")


def write_token_file(home: Path, token: str) -> None:
    atomic_write(home / TOKEN_FILE, token.encode() + b"\n", mode=0o600)


def read_token_file(path: Path) -> str:
    """The token in ``path``; refuses a file others may read."""
    mode = path.stat().st_mode
    if mode & 0o077:
        raise UserError(
            f"{path} is readable by group or others (mode {mode & 0o777:o}); "
            f"chmod 600 {path} before it is used"
        )
    return path.read_text().strip()


@dataclass(frozen=True)
class Verdict:
    """What a presented token is: ``user`` when it may act, else why not."""

    user: User | None
    reason: str  # "ok", "missing", "unknown", "revoked", "expired"


class UserStore:
    """The users of a running node, re-read when the file changes."""

    def __init__(self, home: Path | None, users: Iterable[User] = ()) -> None:
        self.home = home
        self._users = list(users)
        self._by_hash = {u.token_hash: u for u in self._users}
        self._stamp: tuple[int, int] | None = None
        self._checked = float("-inf")
        self.reload(force=True)

    @classmethod
    def fixed(cls, users: Iterable[User]) -> UserStore:
        """A store that is not backed by a file (tests)."""
        return cls(None, users)

    def reload(self, *, force: bool = False, every_s: float = _RELOAD_EVERY_S) -> None:
        """Re-read the file if its mtime or size changed; looks at most once per
        ``every_s`` (a second; a tenth for a token it does not know)."""
        if self.home is None:
            return
        now = time.monotonic()
        if not force and now - self._checked < every_s:
            return
        self._checked = now
        path = self.home / USERS_FILE
        try:
            st = path.stat()
        except FileNotFoundError:
            self._set([], None)
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        # A file that cannot be read keeps the last good set: it is not an empty one.
        with contextlib.suppress(UserError, OSError):
            self._set(read_users(self.home), stamp)

    def _set(self, users: list[User], stamp: tuple[int, int] | None) -> None:
        self._users = users
        self._by_hash = {u.token_hash: u for u in users}
        self._stamp = stamp

    @property
    def users(self) -> list[User]:
        self.reload()
        return list(self._users)

    def name_of(self, actor: bytes) -> str | None:
        if actor == NODE_ACTOR:
            return None
        for user in self.users:
            if hmac.compare_digest(user.actor, actor):
                return user.name
        return None

    def check(self, token: str | None, now_ms: int | None = None) -> Verdict:
        if not token:
            return Verdict(None, "missing")
        digest = hash_token(token)
        if digest is None:
            return Verdict(None, "unknown")
        self.reload()
        if digest not in self._by_hash:
            self.reload(every_s=_RELOAD_UNKNOWN_S)
        user = self._by_hash.get(digest)
        if user is None or not hmac.compare_digest(user.token_hash, digest):
            return Verdict(None, "unknown")
        now = int(time.time() * 1000) if now_ms is None else now_ms
        if user.revoked_ms is not None:
            return Verdict(None, "revoked")
        if user.expires_ms is not None and user.expires_ms <= now:
            return Verdict(None, "expired")
        return Verdict(user, "ok")


def make_user(
    name: str, roles: Iterable[str], *, expires_ms: int | None = None
) -> tuple[User, str]:
    """A user and its token, not stored anywhere (for fixed stores in tests)."""
    token, digest = new_token()
    user = User(
        name=name,
        roles=tuple(r for r in USER_ROLES if r in set(roles)),
        token_hash=digest,
        actor=secrets.token_bytes(ACTOR_SIZE),
        created_ms=int(time.time() * 1000),
        expires_ms=expires_ms,
        revoked_ms=None,
    )
    return user, token

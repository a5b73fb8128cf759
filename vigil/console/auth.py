"""Console accounts, sessions, CSRF and roles (stdlib only).

- Passwords: `hashlib.scrypt` (n=2¹⁴, r=8, p=1: ≈ 16 MiB and tens of ms per check, so a stolen
  users file is slow to brute-force) with a random 16-byte salt per user, stored as
  `scrypt$n$r$p$salt$hash` (base64). Checked in constant time.
- Users live in a JSON file (`VIGIL_CONSOLE_USERS_FILE`, default `<data_dir>/console-users.json`,
  mode 0600), managed with `vigil console add-user`; never in the repository.
- Sessions: a random session id in a cookie signed with HMAC-SHA256 under the session secret
  (`VIGIL_CONSOLE_SESSION_SECRET`, or a random one kept in the data dir), HttpOnly,
  SameSite=Strict, Secure when configured; the server keeps the session (user, role, CSRF token,
  expiry) so logout and expiry are enforced server-side.
- CSRF: every POST carries the session's token in a hidden field, compared in constant time.
- Login rate limit: failures per client address and per user name in a sliding window.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from pathlib import Path

ROLES: tuple[str, ...] = ("volunteer", "moderator", "admin")  # least to most privileged
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
_MAXMEM = 64 * 1024 * 1024


class AuthError(ValueError):
    """A user-management error the CLI reports in one line."""


def role_at_least(role: str, needed: str) -> bool:
    """Whether `role` has at least the privileges of `needed`."""
    return role in ROLES and ROLES.index(role) >= ROLES.index(needed)


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """`scrypt$n$r$p$salt$hash` for `password` with a fresh random salt."""
    if not password:
        raise AuthError("empty password")
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, maxmem=_MAXMEM, dklen=32, **_SCRYPT)
    b64 = base64.b64encode
    return (f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}$"
            f"{b64(salt).decode()}${b64(digest).decode()}")


def verify_password(password: str, stored: str) -> bool:
    """Whether `password` matches a `hash_password` string (False for any malformed one)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n),
                                r=int(r), p=int(p), maxmem=_MAXMEM, dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


@dataclass(frozen=True)
class User:
    """A console account."""

    name: str
    role: str
    password_hash: str


class Users:
    """The users file: `{"users": {name: {"role": ..., "password": "scrypt$..."}}}`.

    Re-read when its mtime changes, so `vigil console add-user` takes effect without a restart.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mtime: float | None = None
        self._users: dict[str, User] = {}

    def _load(self) -> dict[str, User]:
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            self._users, self._mtime = {}, None
            return self._users
        if mtime != self._mtime:
            raw = json.loads(self.path.read_text())
            self._users = {name: User(name, entry["role"], entry["password"])
                           for name, entry in raw.get("users", {}).items()}
            self._mtime = mtime
        return self._users

    def get(self, name: str) -> User | None:
        return self._load().get(name)

    def all(self) -> list[User]:
        return sorted(self._load().values(), key=lambda u: u.name)

    def add(self, name: str, role: str, password: str) -> None:
        """Create or replace a user (the password is hashed here)."""
        if role not in ROLES:
            raise AuthError(f"unknown role {role!r}; choose from {', '.join(ROLES)}")
        if not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise AuthError("user names are letters, digits, '-', '_' and '.'")
        raw = json.loads(self.path.read_text()) if self.path.exists() else {"users": {}}
        raw.setdefault("users", {})[name] = {"role": role, "password": hash_password(password)}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(raw, out, indent=2)
        tmp.replace(self.path)

    def authenticate(self, name: str, password: str) -> User | None:
        """The user if the password is right. Unknown users cost the same time as known ones."""
        user = self.get(name)
        if user is None:
            verify_password(password, _DUMMY_HASH)
            return None
        return user if verify_password(password, user.password_hash) else None


_DUMMY_HASH = hash_password("not-a-real-password", salt=b"\0" * 16)


def load_secret(value: str | None, file: Path | None, data_dir: Path) -> bytes:
    """The session secret: from the setting, a file, or a random one kept in the data dir."""
    if value:
        return value.encode()
    if file is not None:
        return file.read_bytes().strip()
    path = data_dir / "console-session-secret"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32))
    return path.read_bytes().strip()


def sign_sid(secret: bytes, sid: str) -> str:
    """The cookie value for session id `sid`."""
    mac = hmac.new(secret, f"session:{sid}".encode(), hashlib.sha256).hexdigest()
    return f"{sid}.{mac}"


def unsign_sid(secret: bytes, cookie: str | None) -> str | None:
    """The session id in a cookie value, if its signature is valid."""
    if not cookie or "." not in cookie:
        return None
    sid, _, mac = cookie.rpartition(".")
    expected = hmac.new(secret, f"session:{sid}".encode(), hashlib.sha256).hexdigest()
    return sid if hmac.compare_digest(mac, expected) else None


def csrf_ok(expected: str, given: str | None) -> bool:
    """Constant-time CSRF token check."""
    return bool(given) and hmac.compare_digest(expected, given or "")


class RateLimiter:
    """At most `limit` failures per key in a sliding `window` of seconds."""

    def __init__(self, limit: int = 10, window: float = 900.0) -> None:
        self.limit = limit
        self.window = window
        self._failures: dict[str, deque[float]] = defaultdict(deque)

    def blocked(self, key: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        hits = self._failures.get(key)
        if not hits:
            return False
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        return len(hits) >= self.limit

    def fail(self, key: str, now: float | None = None) -> None:
        self._failures[key].append(time.monotonic() if now is None else now)

    def reset(self, key: str) -> None:
        self._failures.pop(key, None)

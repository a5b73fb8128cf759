"""Console accounts, sessions, CSRF helpers and the login rate limit (no broker)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vigil.console.auth import (
    AuthError,
    RateLimiter,
    Users,
    csrf_ok,
    hash_password,
    load_secret,
    role_at_least,
    sign_sid,
    unsign_sid,
    verify_password,
)


def test_password_hash_is_salted_and_verifies() -> None:
    first, second = hash_password("correct horse"), hash_password("correct horse")
    assert first != second  # per-user salt
    assert first.startswith("scrypt$")
    assert "correct horse" not in first
    assert verify_password("correct horse", first)
    assert not verify_password("wrong horse", first)
    assert not verify_password("correct horse", "garbage")
    assert not verify_password("x", "pbkdf2$1$2$3$4$5")


def test_users_file_is_private_and_authenticates(tmp_path: Path) -> None:
    users = Users(tmp_path / "users.json")
    users.add("ana", "volunteer", "long-password-1")
    assert (tmp_path / "users.json").stat().st_mode & 0o777 == 0o600
    assert users.authenticate("ana", "long-password-1").role == "volunteer"  # type: ignore[union-attr]
    assert users.authenticate("ana", "nope") is None
    assert users.authenticate("nobody", "long-password-1") is None
    with pytest.raises(AuthError):
        users.add("bob", "root", "long-password-1")
    with pytest.raises(AuthError):
        users.add("bad name!", "admin", "long-password-1")


def test_roles_are_ordered() -> None:
    assert role_at_least("admin", "moderator")
    assert role_at_least("moderator", "moderator")
    assert not role_at_least("volunteer", "moderator")
    assert not role_at_least("intruder", "volunteer")


def test_session_cookie_signature() -> None:
    cookie = sign_sid(b"k1", "sid123")
    assert unsign_sid(b"k1", cookie) == "sid123"
    assert unsign_sid(b"k2", cookie) is None  # other secret
    assert unsign_sid(b"k1", "sid124." + cookie.split(".")[1]) is None  # forged id
    assert unsign_sid(b"k1", None) is None


def test_csrf_check() -> None:
    assert csrf_ok("tok", "tok")
    assert not csrf_ok("tok", "")
    assert not csrf_ok("tok", None)
    assert not csrf_ok("tok", "other")


def test_secret_from_setting_file_or_generated(tmp_path: Path) -> None:
    assert load_secret("s3cret", None, tmp_path) == b"s3cret"
    (tmp_path / "f").write_text("from-file\n")
    assert load_secret(None, tmp_path / "f", tmp_path) == b"from-file"
    generated = load_secret(None, None, tmp_path / "data")
    assert len(generated) == 64 and load_secret(None, None, tmp_path / "data") == generated
    assert (tmp_path / "data" / "console-session-secret").stat().st_mode & 0o777 == 0o600


def test_rate_limiter_window() -> None:
    limiter = RateLimiter(limit=2, window=10)
    limiter.fail("a", now=0)
    assert not limiter.blocked("a", now=1)
    limiter.fail("a", now=1)
    assert limiter.blocked("a", now=2)
    assert not limiter.blocked("a", now=11.5)  # the window slid past both failures
    limiter.fail("b", now=0)
    limiter.reset("b")
    assert not limiter.blocked("b", now=0)

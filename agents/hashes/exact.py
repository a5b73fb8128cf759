"""Exact hash types: cryptographic digests of the raw bytes (match only the very same file)."""

from __future__ import annotations

import hashlib
from typing import ClassVar

from agents.hashes.base import is_hex


class _ExactHash:
    """Digest of the raw bytes; distance is 0 (same) or "infinitely" far."""

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    threshold: ClassVar[int] = 0
    _hex_len: ClassVar[int]

    def compute(self, image: bytes) -> str:
        return hashlib.new(self.name, image).hexdigest()

    def distance(self, a: str, b: str) -> int:
        return 0 if a.lower() == b.lower() else 1 << 16

    def is_valid(self, value: str) -> bool:
        return is_hex(value, self._hex_len)


class Sha256(_ExactHash):
    """SHA-256 of the bytes (64 hex)."""

    name = "sha256"
    _hex_len = 64


class Md5(_ExactHash):
    """MD5 of the bytes (32 hex). Weak as a digest, but many hash lists still ship it."""

    name = "md5"
    _hex_len = 32

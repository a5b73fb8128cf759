"""Hash types: one small class per signal type behind the `HashType` protocol.

A hash type says how to compute its hash from image bytes and how far apart two hashes are; the
bank index and the hashing detector work with any of them. The exact types here (md5, sha256)
match at distance 0; perceptual types (PDQ, pHash, dHash) plug in the same way with a threshold.
"""

from __future__ import annotations

import hashlib
from typing import ClassVar, Protocol


class HashType(Protocol):
    """One signal type of DESIGN §5 (`signal_type` column of a bank)."""

    name: ClassVar[str]
    version: ClassVar[str]
    #: Largest distance that counts as a match (0 for exact hashes).
    threshold: ClassVar[int]

    def compute(self, image: bytes) -> str:
        """The hash of the image bytes, as the lowercase hex a bank stores."""
        ...

    def distance(self, a: str, b: str) -> int:
        """How far apart two hashes are (0 = identical)."""
        ...

    def is_valid(self, value: str) -> bool:
        """Whether `value` is a well-formed hash of this type (bank import checks every row)."""
        ...


class _ExactHash:
    """Cryptographic digest of the raw bytes: matches only the very same file."""

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    threshold: ClassVar[int] = 0
    _hex_len: ClassVar[int]

    def compute(self, image: bytes) -> str:
        return hashlib.new(self.name, image).hexdigest()

    def distance(self, a: str, b: str) -> int:
        return 0 if a.lower() == b.lower() else 1 << 16

    def is_valid(self, value: str) -> bool:
        return len(value) == self._hex_len and all(c in "0123456789abcdef" for c in value.lower())


class Sha256(_ExactHash):
    """SHA-256 of the bytes (64 hex)."""

    name = "sha256"
    _hex_len = 64


class Md5(_ExactHash):
    """MD5 of the bytes (32 hex). Weak as a digest, but many hash lists still ship it."""

    name = "md5"
    _hex_len = 32


HASH_TYPES: dict[str, HashType] = {h.name: h for h in (Sha256(), Md5())}

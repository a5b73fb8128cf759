"""pHash and dHash (64 bits, the `imagehash` package): secondary perceptual signals.

They are not bank signal types (DESIGN §5 lists pdq, md5, sha256); the hashing detector puts
them in the evidence of its `pdq` signal for detectors that want a second opinion.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from agents.hashes.base import ImageHash, hamming_hex, is_hex

if TYPE_CHECKING:
    from PIL import Image


class _ImageHashLib:
    """A 64-bit `imagehash` function behind the `PerceptualHashType` protocol."""

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    threshold: ClassVar[int] = 10
    bits: ClassVar[int] = 64

    def _hash(self, image: Image.Image) -> object:
        raise NotImplementedError

    def hash_image(self, image: Image.Image) -> ImageHash:
        return ImageHash(str(self._hash(image)))

    def compute(self, image: bytes) -> str:
        from agents.imaging import decode

        return self.hash_image(decode(image).frames[0]).hex

    def distance(self, a: str, b: str) -> int:
        return hamming_hex(a, b)

    def is_valid(self, value: str) -> bool:
        return is_hex(value, 16)


class PHash(_ImageHashLib):
    """DCT-based perceptual hash (robust to scaling and recompression)."""

    name = "phash"

    def _hash(self, image: Image.Image) -> object:
        import imagehash

        return imagehash.phash(image)


class DHash(_ImageHashLib):
    """Gradient (difference) hash: cheap, robust to brightness changes."""

    name = "dhash"

    def _hash(self, image: Image.Image) -> object:
        import imagehash

        return imagehash.dhash(image)

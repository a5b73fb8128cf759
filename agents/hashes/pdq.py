"""PDQ (Meta's perceptual hash, 256 bits) via the `pdqhash` package, with its quality score.

Hex is the hash's bits most significant first, as python-threatexchange and Meta's hash lists
write it, so bank files from ThreatExchange/HMA load unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np

from agents.hashes.base import ImageHash, hamming_hex, is_hex

if TYPE_CHECKING:
    from PIL import Image

#: Order of `pdqhash.compute_dihedral`'s results (pdqhash-python's documented order).
DIHEDRAL_VARIANTS = (
    "original", "rot90", "rot180", "rot270", "flip_v", "flip_h", "rot90_flip_v", "rot90_flip_h",
)
#: Below this PDQ quality a perceptual match cannot be trusted (DESIGN §5; Meta's guidance).
MIN_QUALITY = 50


def _bits_to_hex(bits: np.ndarray) -> str:
    return np.packbits(bits.astype(np.uint8)).tobytes().hex()


def _pixels(image: Image.Image) -> np.ndarray:
    # pdqhash wants a contiguous H×W×3 uint8 array.
    return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))


class Pdq:
    """PDQ: Hamming distance, match at ≤ 31 bits (per-bank override) and quality ≥ 50."""

    name: ClassVar[str] = "pdq"
    version: ClassVar[str] = "1"
    threshold: ClassVar[int] = 31
    bits: ClassVar[int] = 256
    min_quality: ClassVar[int] = MIN_QUALITY

    def hash_image(self, image: Image.Image) -> ImageHash:
        import pdqhash

        vector, quality = pdqhash.compute(_pixels(image))
        return ImageHash(_bits_to_hex(vector), int(quality))

    def hash_dihedral(self, image: Image.Image) -> list[tuple[str, ImageHash]]:
        import pdqhash

        vectors, quality = pdqhash.compute_dihedral(_pixels(image))
        return [(name, ImageHash(_bits_to_hex(v), int(quality)))
                for name, v in zip(DIHEDRAL_VARIANTS, vectors, strict=True)]

    def compute(self, image: bytes) -> str:
        """PDQ of the first frame of encoded image bytes (default decoding limits)."""
        from agents.imaging import decode

        return self.hash_image(decode(image).frames[0]).hex

    def distance(self, a: str, b: str) -> int:
        return hamming_hex(a, b)

    def is_valid(self, value: str) -> bool:
        return is_hex(value, 64)



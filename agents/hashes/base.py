"""The hash-type protocols (read this first): what every signal type of a bank provides.

A *hash type* is one `signal_type` of DESIGN §5. `HashType` is what the bank parser and the
exact lookup need (name, version, threshold, compute, distance, is_valid). Perceptual types add
one capability on top, `PerceptualHashType.hash_image`, because they hash decoded pixels rather
than bytes: the hashing detector decodes an image once (`agents.imaging`) and hands the pixels
to every perceptual type. Results are tiny value types (`ImageHash`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol

if TYPE_CHECKING:
    from PIL import Image

_HEX = frozenset("0123456789abcdef")


def is_hex(value: str, length: int) -> bool:
    """`value` is exactly `length` hex digits (either case)."""
    return len(value) == length and all(c in _HEX for c in value.lower())


def hamming_hex(a: str, b: str) -> int:
    """Number of differing bits between two equal-length hex strings."""
    if len(a) != len(b):
        raise ValueError("hashes of different lengths")
    return (int(a, 16) ^ int(b, 16)).bit_count()


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


@dataclass(frozen=True, slots=True)
class ImageHash:
    """One perceptual hash of one picture: lowercase hex and the algorithm's quality (0–100).

    `quality` is PDQ's own confidence (low for flat or tiny images); types without one say 100.
    """

    hex: str
    quality: int = 100


class PerceptualHashType(HashType, Protocol):
    """A hash of the pixels, compared by Hamming distance; `threshold` is the default match."""

    #: Length of the hash in bits.
    bits: ClassVar[int]

    def hash_image(self, image: Image.Image) -> ImageHash:
        """Hash an already decoded, orientation-corrected RGB image."""
        ...


class DihedralHashType(PerceptualHashType, Protocol):
    """Capability: hashes of the 8 rotations/mirrors of an image in one pass (PDQ has it).

    Matching any of a query's 8 variants against a bank makes rotated and mirrored copies match.
    """

    def hash_dihedral(self, image: Image.Image) -> list[tuple[str, ImageHash]]:
        """(variant name, hash) for the original and its 7 rotations/mirrors."""
        ...

"""Hash types: one small class per signal type, behind the protocols of `agents.hashes.base`.

A hash type says how to compute its hash and how far apart two hashes are; the bank index and
the hashing detectors work with any of them. Exact types (md5, sha256) hash the bytes and match
at distance 0; perceptual types (PDQ, pHash, dHash) hash decoded pixels and match by Hamming
distance up to a threshold. Adding a type is one module plus one line in `HASH_TYPES`.
"""

from __future__ import annotations

from agents.hashes.base import (
    DihedralHashType,
    HashType,
    ImageHash,
    PerceptualHashType,
    hamming_hex,
    is_hex,
)
from agents.hashes.exact import Md5, Sha256
from agents.hashes.imagehash_types import DHash, PHash
from agents.hashes.pdq import Pdq

#: Every hash type by name.
ALL_HASH_TYPES: dict[str, HashType] = {
    h.name: h for h in (Sha256(), Md5(), Pdq(), PHash(), DHash())
}
#: Signal types a bank file may list (DESIGN §5): what `parse_bank` accepts.
HASH_TYPES: dict[str, HashType] = {n: ALL_HASH_TYPES[n] for n in ("sha256", "md5", "pdq")}

__all__ = [
    "ALL_HASH_TYPES", "HASH_TYPES", "DHash", "DihedralHashType", "HashType", "ImageHash", "Md5",
    "PHash", "Pdq", "PerceptualHashType", "Sha256", "hamming_hex", "is_hex",
]

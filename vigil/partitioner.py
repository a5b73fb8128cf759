"""Kafka's default partitioner — murmur2 of the key, as the Java client computes it — in fewer
Python operations than aiokafka's.

Why: every keyed record Vigil produces is partitioned in Python, and aiokafka's `murmur2` walks
the key byte by byte with a mask after every step: ≈ 3× the time of this version, which
unpacks the key's 32-bit words at once (bench in docs/performance.md, "Batched produce"). The
result must be bit-identical — decide relies on every signal of one content landing on one
partition whichever process (or client library) produced it — so `tests/unit/test_partitioner.py`
compares both on random keys of every length.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Sequence

_M = 0x5BD1E995
_MASK = 0xFFFFFFFF
_SEED = 0x9747B28C
_WORDS = [struct.Struct(f"<{n}I") for n in range(64)]  # keys up to 255 bytes: no new Struct


def murmur2(data: bytes) -> int:
    """MurmurHash2 of `data` (seed 0x9747b28c), unsigned 32-bit, as Kafka's `Utils.murmur2`."""
    length = len(data)
    h = _SEED ^ length
    n = length >> 2
    for k in (_WORDS[n] if n < 64 else struct.Struct(f"<{n}I")).unpack_from(data):
        k = (k * _M) & _MASK
        k = ((k ^ (k >> 24)) * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    rest = length & 3
    if rest:
        i = length - rest
        if rest == 3:
            h ^= data[i + 2] << 16
        if rest >= 2:
            h ^= data[i + 1] << 8
        h = ((h ^ data[i]) * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    return h ^ (h >> 15)


class Murmur2Partitioner:
    """The producer partitioner faust hands aiokafka (`producer_partitioner`): keyed records by
    murmur2 like every Kafka client's default; records without key to a random available
    partition (as aiokafka's `DefaultPartitioner`)."""

    def __call__(self, key: bytes | None, all_partitions: Sequence[int],
                 available: Sequence[int]) -> int:
        if key is None:  # spreading records, not a secret: the stdlib generator is right
            return random.choice(available or all_partitions)  # noqa: S311
        return all_partitions[(murmur2(key) & 0x7FFFFFFF) % len(all_partitions)]

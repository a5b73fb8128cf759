"""agents.bank_index: multi-index hashing finds exactly what brute force finds."""

from __future__ import annotations

import numpy as np
import pytest

from agents.bank_index import (
    MultiIndexHash,
    brute_force_search,
    choose_layout,
    hex_to_words,
    popcount_distances,
    words_to_hex,
)


def flip_bits(word: np.ndarray, bits: np.ndarray) -> np.ndarray:
    out = word.copy()
    for bit in bits:
        out[bit // 64] ^= np.uint64(1) << np.uint64(63 - bit % 64)
    return out


@pytest.fixture(scope="module")
def planted() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """20k random hashes; queries at distance 0..40 from known rows (one per distance)."""
    rng = np.random.default_rng(7)
    words = rng.integers(0, 2**64, size=(20_000, 4), dtype=np.uint64)
    rows = rng.choice(len(words), 41, replace=False)
    queries = np.stack([flip_bits(words[r], rng.choice(256, d, replace=False))
                        for d, r in enumerate(rows)])
    return words, rows, queries


def as_set(hits) -> set[tuple[int, int, int]]:  # type: ignore[no-untyped-def]
    return set(zip(hits.query.tolist(), hits.row.tolist(), hits.distance.tolist(), strict=True))


def test_planted_matches_at_every_distance_up_to_the_threshold(planted) -> None:  # type: ignore[no-untyped-def]
    words, rows, queries = planted
    hits = MultiIndexHash(words).search(queries, 31)
    found = {(q, r): d for q, r, d in as_set(hits)}
    for distance, row in enumerate(rows):
        if distance <= 31:
            assert found.get((distance, int(row))) == distance
        else:
            assert (distance, int(row)) not in found
    assert all(d <= 31 for d in found.values())


@pytest.mark.parametrize("threshold", [0, 1, 15, 16, 31, 32, 47, 63])
def test_same_answer_as_brute_force(planted, threshold: int) -> None:  # type: ignore[no-untyped-def]
    words, _, queries = planted
    assert as_set(MultiIndexHash(words).search(queries, threshold)) == as_set(
        brute_force_search(words, queries, threshold))


def test_clustered_hashes_and_duplicates() -> None:
    """Real banks are not uniform: near-duplicate clusters and repeated rows."""
    rng = np.random.default_rng(3)
    centre = rng.integers(0, 2**64, size=4, dtype=np.uint64)
    cluster = np.stack([flip_bits(centre, rng.choice(256, rng.integers(0, 40), replace=False))
                        for _ in range(500)])
    words = np.concatenate([cluster, cluster[:50],
                            rng.integers(0, 2**64, size=(2000, 4), dtype=np.uint64)])
    queries = np.stack([centre, flip_bits(centre, np.arange(20))])
    assert as_set(MultiIndexHash(words).search(queries, 31)) == as_set(
        brute_force_search(words, queries, 31))


def test_empty_index_and_empty_queries() -> None:
    empty = MultiIndexHash(np.zeros((0, 4), np.uint64))
    assert len(empty) == 0
    assert len(empty.search(np.zeros((1, 4), np.uint64), 31).row) == 0
    index = MultiIndexHash(np.ones((3, 4), np.uint64))
    assert len(index.search(np.zeros((0, 4), np.uint64), 31).row) == 0


def test_hex_round_trip_and_bit_order() -> None:
    value = "80" + "00" * 31  # the first hex digit's top bit is bit 0 of the hash
    words = hex_to_words([value])
    assert words[0, 0] == np.uint64(1) << np.uint64(63)
    assert words_to_hex(words) == [value]
    assert popcount_distances(words, hex_to_words(["00" * 32])[0]).tolist() == [1]


_TEN_MILLION = ((22,) * 4 + (21,) * 8, (6,) * 12)  # the 10M layout, folded hard: spans words
_SMALL = ((16,) * 16, (16,) * 16)  # the small-bank layout, unfolded
_WIDE = ((32,) * 8, (10,) * 8)  # few wide chunks: radius 3 at threshold 31


@pytest.mark.parametrize(("layout", "threshold"), [
    (_TEN_MILLION, 0), (_TEN_MILLION, 31), (_TEN_MILLION, 47),
    (_SMALL, 0), (_SMALL, 31), (_SMALL, 47), (_WIDE, 0), (_WIDE, 31),
])
def test_any_layout_is_exact(planted, layout, threshold: int) -> None:  # type: ignore[no-untyped-def]
    """Exactness must not depend on the chunking, the table folding or the radii chosen."""
    words, _, _ = planted
    rng = np.random.default_rng(threshold)
    queries = np.stack([flip_bits(words[d * 7], rng.choice(256, d, replace=False))
                        for d in range(41)])
    index = MultiIndexHash(words[:3000], layout=layout, scan_when_cheaper=False)
    assert index._plan(threshold) is not None  # the probing path, not the scan fallback
    radii = index.radii(threshold)
    assert sum(r + 1 for r in radii) > threshold  # the generalised pigeonhole condition
    expected = as_set(brute_force_search(words[:3000], queries, threshold))
    assert len(expected) >= threshold // 2  # planted matches exist to be found
    assert as_set(index.search(queries, threshold)) == expected


def test_layout_at_ten_million_fits_the_memory_target() -> None:
    """The layout chosen for 10M hashes stays ≤ 1 GB (hashes + tables), computed, not built."""
    sizes, table_bits = choose_layout(10_000_000)
    n = 10_000_000
    memory = 32 * n + 4 * len(sizes) * n + 4 * sum((1 << k) + 1 for k in table_bits)
    assert memory <= 1_000_000_000
    assert sum(sizes) == 256

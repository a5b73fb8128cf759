"""Exact-recall Hamming range search over millions of 256-bit PDQ hashes: multi-index hashing.

Why multi-index hashing (MIH, Norouzi et al. 2012) and not a library: it gives *exact* recall
at the threshold (brute force's answer, provably), fits 10M hashes in < 1 GB, and is two short
compiled loops. faiss's `IndexBinaryFlat` is exact but brute force (≈ 120 queries/s at 10M,
DESIGN §1), its HNSW/IVF binary indexes lose recall on PDQ codes, and its
`IndexBinaryMultiHash` keeps a hash map of vectors per table (many times our 1 GB at 10M).

How: the 256 bits are split into `m` chunks of `b` bits (`m` chosen per index size, 12 × 21–22
bits at 10M). The *generalised* pigeonhole principle (Qin et al., GPH 2018): give each chunk a
search radius `τ_i` with Σ(τ_i + 1) > t. If two hashes are within `t` bits, some chunk differs
by at most its `τ_i` bits (otherwise every chunk differs by ≥ τ_i + 1 and the total exceeds `t`).
So a query probes, in chunk `i`'s table, every value within `τ_i` bits of its own, and verifies
each candidate with an exact popcount over all 256 bits: nothing within `t` can be missed, and
nothing beyond `t` is returned. The radii are chosen per query threshold (a small dynamic
program minimising probes + expected candidates), so any threshold 0–255 stays exact.

Why 12 × ~21 bits at 10M (16 × 16 bits before): with 16-bit chunks each probe's bucket holds
N / 65,536 ≈ 150 rows at 10M, and a query verified ≈ 41k candidates; 12 chunks with radii
(2, 2, 2, 2, 1, 1, 1, 1, 2, 2, 2, 2) probe ≈ 2k buckets holding ≈ 7k candidates — 4.5× less work
for 40 MB *less* memory. The probe/verify loops are compiled (numba, `nogil`: threads search in
parallel) because numpy's gathers cost ≈ 100 ns per candidate in temporaries; compiled, a
candidate costs about one cache miss.

Layout (compact, contiguous): the hashes as an (N, 4) uint64 array (32 B each); per chunk a CSR
table over the chunk's value folded to `k` bits (k = b at 10M; fewer for small banks so an
empty index stays small) — bucket offsets (2^k + 1 uint32) and the row ids sorted by bucket
(uint32, 4 B per hash per chunk), built by a linear counting sort. ≈ 93 B per hash at 10M.

The index never logs or exposes hash values; it returns row numbers and distances.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import llvmlite.ir as ir
import numba
import numpy as np
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

BITS = 256
#: Bytes per hash the table layout may spend beyond the hashes themselves (at large N), plus a
#: fixed allowance so small banks can use fast, sparse tables.
_BYTES_PER_HASH = 100
_SMALL_ALLOWANCE = 1 << 20
_MAX_TABLE_BITS = 24


def hex_to_words(values: Sequence[str]) -> np.ndarray:
    """Hex PDQ strings → (N, 4) uint64, most significant word first (same bit order as hex)."""
    if not values:
        return np.zeros((0, 4), dtype=np.uint64)
    raw = bytes.fromhex("".join(values))
    return np.frombuffer(raw, dtype=">u8").reshape(-1, 4).astype(np.uint64)


def words_to_hex(words: np.ndarray) -> list[str]:
    """Inverse of `hex_to_words`."""
    return [row.astype(">u8").tobytes().hex() for row in np.atleast_2d(words)]


def popcount_distances(words: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Hamming distances of every row of `words` (N, 4) to one `query` (4,): brute force."""
    return np.bitwise_count(words ^ query).sum(axis=1, dtype=np.int32)


# ---------------------------------------------------------------------------- layout choice


def _ball(bits: int, radius: int) -> int:
    """Number of `bits`-bit values within `radius` bits of one value."""
    return sum(math.comb(bits, k) for k in range(min(radius, bits) + 1))


def _chunk_sizes(m: int) -> tuple[int, ...]:
    return tuple(BITS // m + (1 if i < BITS % m else 0) for i in range(m))


@functools.lru_cache(maxsize=256)
def _radii(sizes: tuple[int, ...], table_bits: tuple[int, ...], n: int,
           max_distance: int) -> tuple[tuple[int, ...], float]:
    """Per-chunk radii with Σ(τ+1) > max_distance minimising probes + expected candidates.

    Returns the radii and the modelled cost (probes + candidates) of one query.
    """
    need = max_distance + 1
    # dp: budget reached (capped at `need`) → (cost, radii so far)
    dp: dict[int, tuple[float, tuple[int, ...]]] = {0: (0.0, ())}
    for bits, k in zip(sizes, table_bits, strict=True):
        per_probe = 1.0 + n / 2.0 ** k
        nxt: dict[int, tuple[float, tuple[int, ...]]] = {}
        for reached, (cost, radii) in dp.items():
            for tau in range(0, min(bits, need) + 1):
                total = cost + _ball(bits, tau) * per_probe
                key = min(need, reached + tau + 1)
                if key not in nxt or nxt[key][0] > total:
                    nxt[key] = (total, radii + (tau,))
                if reached + tau + 1 >= need:
                    break  # a larger radius only costs more
        dp = nxt
    if need not in dp:  # more than 256 + m: every chunk at full radius = brute force
        return tuple(sizes), math.inf
    cost, radii = dp[need]
    return radii, cost


@functools.lru_cache(maxsize=64)
def choose_layout(n: int, max_distance: int = 31) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(chunk sizes, table bits per chunk) for `n` hashes: cheapest queries at `max_distance`
    within ≈ 100 B per hash (+ 1 MiB) of index memory besides the 32 B hashes."""
    best: tuple[float, tuple[int, ...], tuple[int, ...]] | None = None
    budget = _BYTES_PER_HASH * n + _SMALL_ALLOWANCE
    for m in range(8, 17):
        sizes = _chunk_sizes(m)
        for cap in range(8, _MAX_TABLE_BITS + 1):
            table_bits = tuple(min(b, cap) for b in sizes)
            memory = 4 * m * n + 4 * sum((1 << k) + 1 for k in table_bits)
            if memory > budget - 32 * n:
                continue
            _, cost = _radii(sizes, table_bits, max(n, 1), max_distance)
            if best is None or cost < best[0]:
                best = (cost, sizes, table_bits)
    assert best is not None  # m = 16, cap = 8 always fits
    return best[1], best[2]


@functools.lru_cache(maxsize=64)
def _masks(bits: int, radius: int) -> np.ndarray:
    """All `bits`-bit XOR masks with ≤ `radius` bits set, ordered by popcount (so a prefix is a
    smaller ball)."""
    masks = [0]
    frontier = [0]
    for _ in range(min(radius, bits)):
        nxt = {m | (1 << b) for m in frontier for b in range(bits) if not m & (1 << b)}
        frontier = sorted(nxt)
        masks.extend(frontier)
    return np.array(masks, dtype=np.uint32)


# ---------------------------------------------------------------------------- compiled kernels


def _jit(**options: object):  # type: ignore[no-untyped-def]
    """`numba.njit` with its on-disk cache where the package folder (or NUMBA_CACHE_DIR) is
    writable, so a worker does not pay ≈ 2 s of compiling per start; without a writable place
    (a read-only image as a non-root user) numba refuses `cache=True`, so compile in memory."""
    def wrap(fn):  # type: ignore[no-untyped-def]
        try:
            return numba.njit(cache=True, **options)(fn)
        except RuntimeError:
            return numba.njit(cache=False, **options)(fn)
    return wrap


@_jit(nogil=True, inline="always")
def _key(row: np.ndarray, start: int, nbits: int) -> np.uint32:  # pragma: no cover - compiled
    """Bits [start, start + nbits) of a 256-bit hash (bit 0 = top bit of word 0), nbits ≤ 32."""
    w = start // 64
    off = start % 64
    if off + nbits <= 64:
        value = (row[w] >> np.uint64(64 - off - nbits)) & np.uint64((1 << nbits) - 1)
    else:
        low = off + nbits - 64  # bits taken from the next word
        high = nbits - low
        value = ((row[w] & np.uint64((1 << high) - 1)) << np.uint64(low)) | (
            row[w + 1] >> np.uint64(64 - low))
    return np.uint32(value)


@_jit(nogil=True)
def _build_table(words: np.ndarray, start: int, nbits: int, table_bits: int,
                 offsets: np.ndarray, rows: np.ndarray) -> None:  # pragma: no cover
    """Counting sort of row ids by folded chunk value: CSR `offsets` (2^k + 1) and `rows` (N)."""
    fold = np.uint32((1 << table_bits) - 1)
    n = words.shape[0]
    offsets[:] = 0
    for i in range(n):
        offsets[(_key(words[i], start, nbits) & fold) + 1] += 1
    for j in range(1, offsets.shape[0]):
        offsets[j] += offsets[j - 1]
    cursor = offsets[:-1].copy()
    for i in range(n):
        bucket = _key(words[i], start, nbits) & fold
        rows[cursor[bucket]] = i
        cursor[bucket] += 1


@intrinsic
def _popcount(typingctx, x):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """LLVM's ctpop on a uint64: one POPCNT instruction (numba has no popcount of its own, and
    a SWAR popcount measured 2.5× slower here)."""
    sig = types.int64(types.uint64)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        fn = builder.module.declare_intrinsic("llvm.ctpop", [ir.IntType(64)])
        return builder.call(fn, args)

    return sig, codegen


@intrinsic
def _prefetch(typingctx, array, index):  # type: ignore[no-untyped-def]  # pragma: no cover
    """Ask the CPU to start loading `array[index]` (1-D) into cache: LLVM's prefetch. The
    candidate loops know their next addresses long before they use them; at 10M hashes
    nearly every one misses the cache, and prefetching them measured 1.2–1.5× faster."""
    sig = types.void(array, index)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        address = builder.bitcast(builder.gep(data, [args[1]]), ir.IntType(8).as_pointer())
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [address.type, i32, i32, i32]),
            "llvm.prefetch.p0i8")
        # read, high temporal locality, data cache
        builder.call(fn, [address, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return sig, codegen


@_jit(nogil=True)
def _search(words: np.ndarray, queries: np.ndarray, max_distance: int,
            starts: np.ndarray, sizes: np.ndarray, folds: np.ndarray,
            table_base: np.ndarray, offsets: np.ndarray, rows: np.ndarray,
            mask_base: np.ndarray, mask_count: np.ndarray, masks: np.ndarray,
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover
    """Probe every chunk's ball, verify each candidate by popcount; may repeat a (query, row).

    Flat loops per query (buckets, bucket bounds, candidate rows, distances, hits) rather than
    one nested loop, each prefetching what the next one reads: runs of independent loads the
    CPU overlaps (together ≈ 2.5× the nested loop at 10M, where nearly every load misses).
    """
    n = words.shape[0]
    flat = words.reshape(-1)
    nprobe = 0
    for c in range(starts.shape[0]):
        nprobe += mask_count[c]
    buckets = np.empty(nprobe, np.int64)
    lo = np.empty(nprobe, np.int64)
    hi = np.empty(nprobe, np.int64)
    row_base = np.empty(nprobe, np.int64)
    candidates = np.empty(1024, np.int64)
    distances = np.empty(1024, np.int64)
    out_q = np.empty(64, np.int64)
    out_r = np.empty(64, np.int64)
    out_d = np.empty(64, np.int32)
    found = 0
    for q in range(queries.shape[0]):
        query = queries[q]
        k = 0
        for c in range(starts.shape[0]):
            key = _key(query, starts[c], sizes[c])
            base = table_base[c]
            first_mask = mask_base[c]
            for j in range(mask_count[c]):
                bucket = base + ((key ^ masks[first_mask + j]) & folds[c])
                buckets[k] = bucket
                row_base[k] = c * n
                _prefetch(offsets, bucket)
                k += 1
        total = 0
        for k in range(nprobe):
            lo[k] = offsets[buckets[k]]
            hi[k] = offsets[buckets[k] + 1]
            _prefetch(rows, row_base[k] + lo[k])
            total += hi[k] - lo[k]
        if total > candidates.shape[0]:
            candidates = np.empty(2 * total, np.int64)
            distances = np.empty(2 * total, np.int64)
        m = 0
        for k in range(nprobe):
            b = row_base[k]
            for p in range(lo[k], hi[k]):
                r = rows[b + p]
                candidates[m] = r
                _prefetch(flat, r * 4)
                m += 1
        q0, q1, q2, q3 = query[0], query[1], query[2], query[3]
        # distances first, in a branch-free loop the compiler vectorises; then the (rare) hits
        for i in range(m):
            r = candidates[i]
            distances[i] = (_popcount(words[r, 0] ^ q0) + _popcount(words[r, 1] ^ q1)
                            + _popcount(words[r, 2] ^ q2) + _popcount(words[r, 3] ^ q3))
        hits = 0
        for i in range(m):
            hits += distances[i] <= max_distance
        if hits == 0:
            continue  # the common case: a tight, vectorised loop and nothing to store
        for i in range(m):
            if distances[i] <= max_distance:
                if found == out_q.shape[0]:
                    out_q = _grow(out_q, 2 * found)
                    out_r = _grow(out_r, 2 * found)
                    out_d = _grow(out_d, 2 * found)
                out_q[found] = q
                out_r[found] = candidates[i]
                out_d[found] = distances[i]
                found += 1
    return out_q[:found], out_r[:found], out_d[:found]


@_jit(nogil=True)
def _grow(a: np.ndarray, cap: int) -> np.ndarray:  # pragma: no cover - compiled
    out = np.empty(cap, a.dtype)
    out[:a.shape[0]] = a
    return out


# ---------------------------------------------------------------------------- the index


@dataclass(frozen=True)
class Hits:
    """Range-search result for a batch: parallel arrays, one element per (query, row) pair."""

    query: np.ndarray  # int64 index into the query batch
    row: np.ndarray  # int64 row of the index
    distance: np.ndarray  # int32 Hamming distance


def _empty_hits() -> Hits:
    return Hits(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int32))


class MultiIndexHash:
    """Immutable MIH index over (N, 4) uint64 words; `search(queries, max_distance)` is exact.

    Build it off to the side and swap the reference: a query sees one index, never a half-built
    one. Searches hold no lock and release the GIL, so threads can share one index.
    """

    def __init__(self, words: np.ndarray, *, layout: tuple[Sequence[int], Sequence[int]]
                 | None = None, scan_when_cheaper: bool = True) -> None:
        words = np.ascontiguousarray(words, dtype=np.uint64).reshape(-1, 4)
        self.words = words
        n = len(words)
        if n >= 1 << 32:
            raise ValueError("more than 2^32 hashes")
        sizes, table_bits = layout or choose_layout(n)
        self.sizes = tuple(int(b) for b in sizes)
        self.table_bits = tuple(int(k) for k in table_bits)
        if sum(self.sizes) != BITS or len(self.table_bits) != len(self.sizes):
            raise ValueError("chunk sizes must cover the 256 bits, one table size each")
        self._starts = np.cumsum((0,) + self.sizes[:-1]).astype(np.int64)
        self._sizes = np.array(self.sizes, np.int64)
        self._folds = np.array([(1 << k) - 1 for k in self.table_bits], np.uint32)
        lengths = [(1 << k) + 1 for k in self.table_bits]
        self._table_base = np.cumsum([0] + lengths[:-1]).astype(np.int64)
        self._offsets = np.empty(sum(lengths), np.uint32)
        self._rows = np.empty(len(self.sizes) * n, np.uint32)
        self._plans: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray] | None] = {}
        self._scan_when_cheaper = scan_when_cheaper
        for c, (bits, k) in enumerate(zip(self.sizes, self.table_bits, strict=True)):
            base = int(self._table_base[c])
            _build_table(words, int(self._starts[c]), bits, k,
                         self._offsets[base:base + lengths[c]], self._rows[c * n:(c + 1) * n])

    def __len__(self) -> int:
        return len(self.words)

    @property
    def nbytes(self) -> int:
        """Memory held by the index arrays (the hashes included)."""
        return self.words.nbytes + self._offsets.nbytes + self._rows.nbytes

    def radii(self, max_distance: int) -> tuple[int, ...]:
        """The per-chunk probe radii a search at `max_distance` uses (Σ(τ+1) > max_distance)."""
        return _radii(self.sizes, self.table_bits, max(len(self), 1), max_distance)[0]

    def _plan(self, max_distance: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(mask offsets, mask counts, masks) per chunk for `max_distance`; None: scan instead."""
        plan = self._plans.get(max_distance, False)
        if plan is False:
            radii, cost = _radii(self.sizes, self.table_bits, max(len(self), 1), max_distance)
            widest = max(_ball(b, r) for b, r in zip(self.sizes, radii, strict=True))
            if (self._scan_when_cheaper and cost >= len(self)) or widest > 1 << 20:
                plan = None
            else:
                masks = [_masks(b, r) for b, r in zip(self.sizes, radii, strict=True)]
                counts = np.array([len(m) for m in masks], np.int64)
                starts = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)
                plan = (starts, counts, np.concatenate(masks))
            self._plans[max_distance] = plan  # a benign race: both threads compute the same
        return plan

    def search(self, queries: np.ndarray, max_distance: int) -> Hits:
        """Every (query, row) with Hamming distance ≤ `max_distance` — exactly brute force's set,
        ordered by query then row."""
        queries = np.ascontiguousarray(queries, dtype=np.uint64).reshape(-1, 4)
        if not len(self.words) or not len(queries) or max_distance < 0:
            return _empty_hits()
        plan = self._plan(min(max_distance, BITS))
        if plan is None:
            # thresholds far past PDQ's useful range: probing would cost more than a scan
            return brute_force_search(self.words, queries, max_distance)
        q, r, d = _search(self.words, queries, max_distance, self._starts, self._sizes,
                          self._folds, self._table_base, self._offsets, self._rows, *plan)
        if not len(q):
            return _empty_hits()
        # A true match may be found once per chunk within its radius: dedup the survivors.
        pair, first = np.unique(q * len(self.words) + r, return_index=True)
        n = len(self.words)
        return Hits(pair // n, pair % n, d[first])


def brute_force_search(words: np.ndarray, queries: np.ndarray, max_distance: int) -> Hits:
    """The reference answer (linear scan per query): for tests and the benchmark."""
    qs, rs, ds = [], [], []
    for i, query in enumerate(np.atleast_2d(queries)):
        dist = popcount_distances(words, query)
        (rows,) = np.nonzero(dist <= max_distance)
        qs.append(np.full(len(rows), i, np.int64))
        rs.append(rows.astype(np.int64))
        ds.append(dist[rows])
    if not qs:
        return _empty_hits()
    return Hits(np.concatenate(qs), np.concatenate(rs), np.concatenate(ds).astype(np.int32))

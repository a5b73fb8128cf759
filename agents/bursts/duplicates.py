"""`text_brigade` and `image_spray`: the same content from several accounts within a window.

Both keep the window's items in a similarity index, group each new item with the oldest live
cluster it is near, and count the cluster's distinct accounts; memory is bounded by the items
in the window (expired items leave the index).

- text: MinHash of word shingles in a MinHash LSH (`datasketch`), Jaccard ≥ `similarity`. The
  signatures (`TextSignatures`) are the CPU-heavy part and depend on the body alone, so a caller
  may compute a batch's ahead, off its event loop, and hand them over (`agents/burst.py`).
- images: PDQ (256 bits, from the hashing role's `pdq` signals, evidence key `pdq`) compared
  by Hamming distance ≤ `max_distance` against the window's hashes (numpy, brute force: the
  window holds at most `max_window_images`).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from datasketch import MinHash, MinHashLSH

from agents.bursts.base import BurstConfig, Incidents
from streams.events import AlertData, PostData, SignalData, Target

_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(slots=True)
class _Cluster:
    cluster_id: str  # the first item's id
    first_at: float
    target: Target
    excerpt: str
    accounts: dict[str, float] = field(default_factory=dict)  # account → latest item time
    items: list[str] = field(default_factory=list)  # sample item ids (first 10)
    threads: set[str] = field(default_factory=set)
    live: int = 0


class _ClusterCounter:
    """Cluster bookkeeping shared by both detectors; `add` returns the cluster an item joined."""

    def __init__(self, kind: str) -> None:
        self.clusters: dict[str, _Cluster] = {}
        self.item_cluster: dict[str, str] = {}
        self.window: deque[tuple[float, str]] = deque()
        self.incidents = Incidents(kind)

    def join(self, item_id: str, near: list[str], at: float, make: Any) -> _Cluster:
        candidates = [self.clusters[self.item_cluster[i]] for i in near
                      if i in self.item_cluster]
        if candidates:
            cluster = min(candidates, key=lambda c: (c.first_at, c.cluster_id))
        else:
            cluster = self.clusters[item_id] = make()
        self.item_cluster[item_id] = cluster.cluster_id
        self.window.append((at, item_id))
        cluster.live += 1
        return cluster

    def expire(self, watermark: float, window_s: float, remove: Any) -> list[AlertData]:
        """Resolve quiet incidents, then drop the items (and clusters) older than the window."""
        resolved = self.incidents.resolve_quiet(watermark, window_s)
        while self.window and self.window[0][0] <= watermark - window_s:
            _, item = self.window.popleft()
            cluster_id = self.item_cluster.pop(item, None)
            remove(item)
            cluster = self.clusters.get(cluster_id or "")
            if cluster is None:
                continue
            cluster.live -= 1
            if cluster.live <= 0 and not self.incidents.is_open(cluster.cluster_id):
                del self.clusters[cluster.cluster_id]
        for cluster_id in [c for c, cl in self.clusters.items()
                           if cl.live <= 0 and not self.incidents.is_open(c)]:
            del self.clusters[cluster_id]
        return resolved

    def size(self) -> int:
        return len(self.clusters) + len(self.item_cluster)


def shingles(text: str, size: int) -> list[bytes]:
    """Word `size`-grams of `text`, lower-cased, as bytes for MinHash."""
    words = _WORD.findall(text.lower())
    if len(words) < size:
        return [" ".join(words).encode()] if words else []
    return [" ".join(words[i:i + size]).encode() for i in range(len(words) - size + 1)]


class TextSignatures:
    """Post body → MinHash signature: fixed seed and permutations, so the same text has the
    same signature in every run and on every thread.

    `sign` reads nothing but the fixed permutations, so it may run in a worker thread for a
    whole batch; `use` hands its result to the detector (on the caller's thread), which then
    takes a body's signature from there and computes only the missing ones itself.
    """

    def __init__(self, num_perm: int, shingle: int) -> None:
        self.num_perm, self.shingle = num_perm, shingle
        self._template = MinHash(num_perm=num_perm, seed=1)
        self._ready: dict[str, MinHash] = {}

    def of(self, body: str) -> MinHash:
        minhash = MinHash(num_perm=self.num_perm, seed=1,
                          permutations=self._template.permutations, scheme=self._template.scheme)
        minhash.update_batch(shingles(body, self.shingle))
        return minhash

    def sign(self, bodies: Iterable[str]) -> dict[str, MinHash]:
        """Signatures by body; touches no state, so any thread may call it."""
        return {body: self.of(body) for body in set(bodies)}

    def use(self, signed: dict[str, MinHash]) -> None:
        """Signatures computed ahead for the next posts (replaces the previous batch's)."""
        self._ready = signed

    def get(self, body: str) -> MinHash:
        ready = self._ready.get(body)
        return ready if ready is not None else self.of(body)


class TextBrigadeDetector:
    """Near-duplicate post bodies from ≥ K distinct accounts on one board within W."""

    kinds: ClassVar[tuple[str, ...]] = ("text_brigade",)

    def __init__(self, config: BurstConfig | None = None,
                 signatures: TextSignatures | None = None) -> None:
        self.config = config or BurstConfig()
        c = self.config.thresholds.text_brigade
        # the index parameters are fixed for the detector's life (a reload keeps them); shared
        # `signatures` fix num_perm and shingle for every detector that uses them
        self.signatures = signatures or TextSignatures(c.num_perm, c.shingle)
        self.similarity, self.num_perm = c.similarity, self.signatures.num_perm
        self.lsh = MinHashLSH(threshold=c.similarity, num_perm=self.num_perm)
        self.counter = _ClusterCounter("text_brigade")
        self.bodies: dict[str, str] = {}  # the window's posts, to re-index them (`reindex`)

    def reindex(self, signatures: TextSignatures) -> None:
        """The index parameters changed (a policy reload: `similarity`, or `num_perm` /
        `shingle` through new `signatures`): index the window's posts again under them.
        Clusters, their counts and open incidents are kept; new posts are matched against
        every post still in the window, under the new parameters."""
        c = self.config.thresholds.text_brigade
        self.signatures = signatures
        self.similarity, self.num_perm = c.similarity, signatures.num_perm
        self.lsh = MinHashLSH(threshold=c.similarity, num_perm=self.num_perm)
        for item, body in self.bodies.items():
            self.lsh.insert(item, signatures.get(body))

    def observe(self, data: Any, at: float) -> list[AlertData]:
        if not isinstance(data, PostData):
            return []
        c = self.config.at(at).text_brigade
        if data.post_id in self.counter.item_cluster:
            return []  # an edit or a redelivery: not a second voice
        if len(_WORD.findall(data.body)) < c.min_tokens:
            return []
        minhash = self.signatures.get(data.body)
        board = data.board or "-"
        near = self.lsh.query(minhash)
        if len(self.counter.window) >= c.max_window_posts:
            self.advance(self.counter.window[0][0] + c.window_s)  # bounded under any flood
        cluster = self.counter.join(
            data.post_id, near, at,
            lambda: _Cluster(data.post_id, at,
                             Target(type="post", id=data.post_id, post_id=data.post_id,
                                    thread_id=data.thread_id, author_id=data.author.id),
                             " ".join(data.body.split())[: c.excerpt_chars]))
        self.lsh.insert(data.post_id, minhash)
        self.bodies[data.post_id] = data.body
        cluster.accounts[data.author.id] = at
        cluster.threads.add(data.thread_id)
        if len(cluster.items) < 10:
            cluster.items.append(data.post_id)
        return self._check(cluster, board, at)

    def _check(self, cluster: _Cluster, board: str, at: float) -> list[AlertData]:
        c = self.config.at(at).text_brigade
        accounts = [a for a, t in cluster.accounts.items() if t > at - c.window_s]
        need = c.min_accounts
        key = f"{board}:{cluster.cluster_id}"
        if len(accounts) < need and not self.counter.incidents.is_open(key):
            return []
        return self.counter.incidents.touch(
            key, first_seen=cluster.first_at, last_seen=at, count=len(accounts),
            severity="high" if len(accounts) >= 2 * need else "medium",
            summary=f"board {board}: near-identical text from {len(accounts)} accounts in "
                    f"{len(cluster.threads)} threads: \"{cluster.excerpt}\"",
            target=cluster.target,
            evidence={"board": board, "accounts": len(accounts), "posts": cluster.live,
                      "threads": len(cluster.threads), "excerpt": cluster.excerpt,
                      "similarity": self.similarity, "threshold": need, "window_s": c.window_s,
                      "sample_post_ids": cluster.items[:10],
                      "sample_account_ids": accounts[:10]})

    def advance(self, watermark: float) -> list[AlertData]:
        return self.counter.expire(watermark, self.config.thresholds.text_brigade.window_s,
                                   self._remove)

    def _remove(self, item: str) -> None:
        self.lsh.remove(item)
        self.bodies.pop(item, None)

    def state_size(self) -> int:
        return self.counter.size()


def pdq_words(hex_hash: str) -> np.ndarray:
    """64 hex chars → 4 uint64 words."""
    return np.frombuffer(bytes.fromhex(hex_hash), dtype=">u8").astype(np.uint64)


class ImageSprayDetector:
    """The same image (PDQ within `max_distance`) from ≥ K distinct accounts within W.

    Consumes `pdq` signals (`SignalData`, detector `pdq`, evidence `pdq` = 64 hex chars).
    Images the banks matched are already blocked and carry no hash: not counted here.
    """

    kinds: ClassVar[tuple[str, ...]] = ("image_spray",)

    def __init__(self, config: BurstConfig | None = None) -> None:
        self.config = config or BurstConfig()
        self.counter = _ClusterCounter("image_spray")
        self.capacity = 1024
        self.hashes = np.zeros((self.capacity, 4), dtype=np.uint64)
        self.ids: list[str | None] = [None] * self.capacity
        self.used = np.zeros(self.capacity, dtype=bool)
        self.slot: dict[str, int] = {}
        self.free: list[int] = list(range(self.capacity - 1, -1, -1))

    def observe(self, data: Any, at: float) -> list[AlertData]:
        if not isinstance(data, SignalData) or data.detector != "pdq":
            return []
        hex_hash = data.evidence.get("pdq")
        if not isinstance(hex_hash, str) or len(hex_hash) != 64 or not data.author_id:
            return []
        if data.content_id in self.slot:
            return []  # redelivered signal
        c = self.config.at(at).image_spray
        words = pdq_words(hex_hash)
        near: list[str] = []
        if self.slot:
            distance = np.bitwise_count(self.hashes ^ words).sum(axis=1)
            near = [self.ids[i] or "" for i in
                    np.flatnonzero(self.used & (distance <= c.max_distance))]
        if len(self.counter.window) >= c.max_window_images:
            self.advance(self.counter.window[0][0] + c.window_s)
        cluster = self.counter.join(
            data.content_id, near, at,
            lambda: _Cluster(data.content_id, at,
                             Target(type="image", id=data.content_id, post_id=data.post_id,
                                    thread_id=data.thread_id, author_id=data.author_id), ""))
        self._store(data.content_id, words)
        cluster.accounts[data.author_id] = at
        if data.thread_id:
            cluster.threads.add(data.thread_id)
        if len(cluster.items) < 10:
            cluster.items.append(data.content_id)
        accounts = [a for a, t in cluster.accounts.items() if t > at - c.window_s]
        need = c.min_accounts
        key = cluster.cluster_id
        if len(accounts) < need and not self.counter.incidents.is_open(key):
            return []
        return self.counter.incidents.touch(
            key, first_seen=cluster.first_at, last_seen=at, count=len(accounts),
            severity="high" if len(accounts) >= 2 * need else "medium",
            summary=f"near-identical image posted by {len(accounts)} accounts in "
                    f"{len(cluster.threads)} threads",
            target=cluster.target,
            evidence={"accounts": len(accounts), "images": cluster.live,
                      "threads": len(cluster.threads), "max_distance": c.max_distance,
                      "threshold": need, "window_s": c.window_s,
                      "sample_image_ids": cluster.items[:10],
                      "sample_account_ids": accounts[:10]})

    def _store(self, image_id: str, words: np.ndarray) -> None:
        if not self.free:
            grown = np.zeros((self.capacity * 2, 4), dtype=np.uint64)
            grown[: self.capacity] = self.hashes
            self.hashes = grown
            self.used = np.concatenate([self.used, np.zeros(self.capacity, dtype=bool)])
            self.ids.extend([None] * self.capacity)
            self.free = list(range(self.capacity * 2 - 1, self.capacity - 1, -1))
            self.capacity *= 2
        slot = self.free.pop()
        self.hashes[slot] = words
        self.ids[slot] = image_id
        self.used[slot] = True
        self.slot[image_id] = slot

    def _remove(self, image_id: str) -> None:
        slot = self.slot.pop(image_id, None)
        if slot is not None:
            self.ids[slot] = None
            self.used[slot] = False
            self.free.append(slot)

    def advance(self, watermark: float) -> list[AlertData]:
        return self.counter.expire(watermark, self.config.thresholds.image_spray.window_s,
                                   self._remove)

    def state_size(self) -> int:
        return self.counter.size()

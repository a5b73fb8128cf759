"""Recent images' PDQ hashes, kept for retroactive matching (issue 4, item 5).

When a bank gains hashes (a partner adds an image that was posted yesterday), the images
already checked and allowed must be found again: the hashing agent keeps each checked image's
PDQ query hashes (every frame with quality ≥ 50, in all 8 rotations/mirrors) for a horizon
(`VIGIL_HASH_RETRO_HORIZON_HOURS`, 72 h) and at most `VIGIL_HASH_RETRO_MAX_IMAGES` images
(oldest dropped first), and on every bank reload searches them with the rows the reload added
(`agents.banks.BankIndex.added_pdq_rows`): a multi-index hash over the recent hashes, queried
with the new rows, so the cost follows the number of new rows, not the bank size.

Bounded memory: ≈ 260 B of hashes per single-frame image plus ≈ 400 B of Python object; the
default 200k images ≈ 130 MB. In memory per worker (each worker sees its own partitions' images);
a restart forgets it (a replay of the last 72 h of `forum.images.v1` would refill it — not done).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from agents.bank_index import MultiIndexHash


@dataclass(frozen=True, slots=True)
class RecentImage:
    """One checked image: who posted it where, when, and its PDQ queries (frame, variant)."""

    image_id: str
    post_id: str | None
    thread_id: str | None
    author_id: str
    at: float  # event time, epoch seconds
    words: bytes  # the query hashes, 32 B each (big-endian words, as hex_to_words)
    origin: tuple[tuple[int, str], ...]  # (frame, variant) per query
    matched: bool  # its own check already matched a positive bank

    @property
    def queries(self) -> list[str]:
        return [self.words[i:i + 32].hex() for i in range(0, len(self.words), 32)]


class RecentImages:
    """A bounded, thread-safe window of recent images' PDQ queries."""

    def __init__(self, horizon_s: float = 72 * 3600, max_images: int = 200_000) -> None:
        self.horizon_s = horizon_s
        self.max_images = max_images
        self._images: OrderedDict[str, RecentImage] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._images)

    def add(self, image_id: str, post_id: str | None, thread_id: str | None, author_id: str,
            queries: Sequence[str], origin: Sequence[tuple[int, str]], matched: bool,
            at: float | None = None) -> None:
        """Remember one checked image (redelivery replaces, never duplicates)."""
        if self.max_images <= 0 or not queries:
            return
        item = RecentImage(image_id, post_id, thread_id, author_id,
                           time.time() if at is None else at,
                           bytes.fromhex("".join(queries)), tuple(origin), matched)
        with self._lock:
            self._images.pop(image_id, None)
            self._images[image_id] = item
            while len(self._images) > self.max_images:
                self._images.popitem(last=False)

    def expire(self, now: float | None = None) -> int:
        """Forget images older than the horizon (by event time); return how many."""
        cutoff = (time.time() if now is None else now) - self.horizon_s
        with self._lock:
            old = [k for k, v in self._images.items() if v.at < cutoff]
            for key in old:
                del self._images[key]
        return len(old)

    def candidates(self, words: np.ndarray, thresholds: np.ndarray,
                   now: float | None = None) -> list[RecentImage]:
        """Recent images with some query within a new row's threshold of that row.

        Candidates only: the caller re-checks each against the whole new index (negative banks,
        per-bank thresholds, quarantine) before acting.
        """
        self.expire(now)
        with self._lock:
            images = list(self._images.values())
        if not images or not len(words):
            return []
        owner = np.repeat(np.arange(len(images)), [len(im.words) // 32 for im in images])
        recent = MultiIndexHash(np.frombuffer(b"".join(im.words for im in images), dtype=">u8")
                                .reshape(-1, 4).astype(np.uint64))
        hits = recent.search(words, int(thresholds.max()))
        keep = hits.distance <= thresholds[hits.query]
        return [images[i] for i in sorted(set(owner[hits.row[keep]].tolist()))]

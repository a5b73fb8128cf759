"""Perceptual-hash detector: PDQ of every image (8 rotations/mirrors, first N frames) vs banks.

Emits one `pdq` signal per image:

- `match`: some frame's PDQ, in one of its 8 dihedral variants, is within a positive bank's
  threshold (default 31, per-bank `pdq_threshold`) and that frame's PDQ quality is ≥ 50, and no
  negative bank (known false positives) matches the image. `distance` is the nearest match's.
- `clear`: checked, nothing matched — including images whose PDQ quality is below 50 on every
  frame (flat, tiny or nearly blank pictures: PDQ says its own hash is not to be trusted, so a
  perceptual match would be noise; evidence `low_quality: true`; exact hashes still apply), and
  images whose match a negative bank suppressed (evidence `suppressed_by`).
- `unchecked`: the image could not be decoded within the limits (`agents.imaging`): zero bytes,
  corrupt, bomb, too many bytes... evidence `reason`; `decide` holds it (fail closed).

Evidence of a `clear` signal carries the image's own hashes — `pdq` (hex, first frame),
`quality`, `phash`, `dhash` — for the burst detectors (image spray: the same picture from many
accounts). A signal that touched a bank (match or suppressed) carries no hash of the image: at
distance 0 it *is* the bank's entry, and bank contents never leave the index (DESIGN §5).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any, ClassVar

from agents.bank_flood import FloodGuard
from agents.banks import BankIndex, PdqMatch
from agents.detectors import example_image
from agents.hashes import DHash, ImageHash, Pdq, PHash
from agents.imaging import (
    DecodedImage,
    DecodeLimits,
    ImageRejected,
    decode,
    trim_borders,
)
from agents.recent_hashes import RecentImage, RecentImages
from streams.events import Account, CloudEvent, ImageData, SignalData

_SEVERITY_ORDER = ("critical", "high", "medium", "low")


class PerceptualHashDetector:
    """PDQ (with pHash/dHash as evidence) of each image, looked up in the banks' PDQ index."""

    signal_names: ClassVar[tuple[str, ...]] = ("pdq",)
    version: ClassVar[str] = "1"

    def __init__(
        self, index: Callable[[], BankIndex], limits: DecodeLimits | None = None, *,
        recent: RecentImages | None = None, flood: FloodGuard | None = None,
    ) -> None:
        # A callable, not an index: the bank store swaps its index on reload.
        self._index = index
        self.limits = limits or DecodeLimits()
        #: checked images' PDQ queries, for retroactive matching when a bank gains hashes
        self.recent = recent
        #: per-entry match counts: quarantines an entry that floods (likely false positive)
        self.flood = flood
        self.pdq = Pdq()
        self.secondary = (PHash(), DHash())

    # ------------------------------------------------------------------ pure entry points

    def detect(self, event: CloudEvent[ImageData]) -> list[SignalData]:
        image = event.data
        if image.data_b64 is None:
            # The agent fetches URL images (agents.fetch) and calls `detect_bytes`; reaching
            # here means nobody fetched it: cannot check, so hold.
            return [self.unchecked(image, "url image was not fetched", "fetch_refused")]
        return [self.detect_bytes(image, image.data_b64)]

    def detect_bytes(self, image: ImageData, data: bytes, at: float | None = None) -> SignalData:
        """The `pdq` signal for `image` whose encoded bytes are `data` (never raises).

        `at` is the image's event time (epoch s): the flood guard's and the recent window's
        clock (replays give the same answers); now when not given.
        """
        try:
            decoded = decode(data, self.limits)
        except ImageRejected as exc:
            return self.unchecked(image, str(exc), exc.kind)
        try:
            return self._match(image, decoded, time.time() if at is None else at)
        except Exception as exc:  # noqa: BLE001 - a hasher bug must hold the image, not crash
            return self.unchecked(image, f"hashing failed ({type(exc).__name__})", "other")

    def unchecked(self, image: ImageData, reason: str, kind: str = "other") -> SignalData:
        """The signal for an image that could not be checked (`decide` holds it).

        `reason` is for people; `reason_kind` a bounded class for metrics.
        """
        return self._signal(image, "unchecked", evidence={"reason": reason, "reason_kind": kind})

    # ------------------------------------------------------------------ internals

    def retro_signal(self, item: RecentImage, at: float | None = None) -> SignalData | None:
        """A `match` signal (evidence `retroactive: true`) for an image checked earlier that the
        current banks now match, or None (no match, a negative bank suppresses it, or every
        matching entry is quarantined)."""
        image = ImageData(image_id=item.image_id, post_id=item.post_id,
                          thread_id=item.thread_id, author=Account(id=item.author_id))
        matches = self._index().match_pdq(item.queries)
        if any(m.negative for m in matches):
            return None
        positives, quarantined = self._unquarantined(
            [m for m in matches if not m.negative], image.image_id,
            time.time() if at is None else at)
        if not positives:
            return None
        checked_at = datetime.fromtimestamp(item.at, timezone.utc).isoformat()
        return self._matched(image, positives, list(item.origin), {
            "retroactive": True, "checked_at": checked_at,
            **({"quarantined_banks": quarantined} if quarantined else {})})

    def _unquarantined(self, positives: list[PdqMatch], image_id: str,
                       at: float) -> tuple[list[PdqMatch], list[str]]:
        """Positives whose entry the flood guard lets through, and the banks it held back."""
        if self.flood is None or not positives:
            return positives, []
        active, held = [], set()
        for match in positives:
            if self.flood.observe(match.ref, match.entry.bank, match.entry.label, image_id, at):
                held.add(match.entry.bank)
            else:
                active.append(match)
        return active, sorted(held)

    def _match(self, image: ImageData, decoded: DecodedImage, at: float) -> SignalData:
        queries: list[str] = []
        origin: list[tuple[int, str]] = []  # (frame, variant) of each query
        first: ImageHash | None = None
        best_quality = 0
        for frame_no, frame in enumerate(decoded.frames):
            variants = self.pdq.hash_dihedral(frame)
            quality = variants[0][1].quality
            if first is None:
                first = variants[0][1]
            best_quality = max(best_quality, quality)
            if quality < self.pdq.min_quality:
                continue  # PDQ itself says this frame's hash is noise
            for variant, value in variants:
                queries.append(value.hex)
                origin.append((frame_no, variant))
            if frame_no == 0:
                # a padded/letterboxed copy: also look up the image without its borders
                # (plain PDQ misses 10 % padding entirely; trimmed, it is the original again)
                trimmed = trim_borders(frame)
                if trimmed.size != frame.size:
                    extra = self.pdq.hash_dihedral(trimmed)
                    if extra[0][1].quality >= self.pdq.min_quality:
                        for variant, value in extra:
                            queries.append(value.hex)
                            origin.append((frame_no, f"trimmed_{variant}"))
        assert first is not None
        facts: dict[str, Any] = {
            "quality": first.quality,
            "frames": len(decoded.frames),
            "frames_total": decoded.frames_total,
            "format": decoded.format,
            "width": decoded.width,
            "height": decoded.height,
        }
        if not queries:
            return self._signal(image, "clear", evidence={
                **facts, **self._own_hashes(decoded, first), "low_quality": True,
                "best_quality": best_quality})
        matches = self._index().match_pdq(queries)
        negatives = [m for m in matches if m.negative]
        positives = [m for m in matches if not m.negative]
        if negatives and positives:
            return self._signal(image, "clear", evidence={
                **facts, "suppressed_by": sorted({m.entry.bank for m in negatives}),
                "suppressed": sorted({m.entry.bank for m in positives})})
        positives, quarantined = self._unquarantined(positives, image.image_id, at)
        if self.recent is not None:
            self.recent.add(image.image_id, image.post_id, image.thread_id, image.author.id,
                            queries, origin, matched=bool(positives), at=at)
        if quarantined:
            facts["quarantined_banks"] = quarantined
        if positives:
            return self._matched(image, positives, origin, facts)
        if quarantined:  # touched a bank: no hash of the image leaves (see module docstring)
            return self._signal(image, "clear", evidence=facts)
        if negatives:
            return self._signal(image, "clear", evidence={
                **facts, "negative_banks": sorted({m.entry.bank for m in negatives})})
        return self._signal(image, "clear", evidence={**facts, **self._own_hashes(decoded, first)})

    def _own_hashes(self, decoded: DecodedImage, first: ImageHash) -> dict[str, Any]:
        own: dict[str, Any] = {"pdq": first.hex}
        for hash_type in self.secondary:
            own[hash_type.name] = hash_type.hash_image(decoded.frames[0]).hex
        return own

    def _matched(self, image: ImageData, positives: list[PdqMatch],
                 origin: list[tuple[int, str]], facts: dict[str, Any]) -> SignalData:
        # The strongest entry decides (severity, then distance); every matched bank is listed.
        best = min(positives, key=lambda m: (_SEVERITY_ORDER.index(m.entry.severity),
                                             m.distance))
        nearest = min(m.distance for m in positives)
        frame_no, variant = origin[best.query]
        return self._signal(
            image, "match", distance=best.distance, threshold=best.threshold,
            evidence={
                **facts,
                "bank": best.entry.bank,
                "label": best.entry.label,
                "severity": best.entry.severity,
                "banks": sorted({m.entry.bank for m in positives}),
                "frame": frame_no,
                "variant": variant,
                "nearest_distance": nearest,
            },
        )

    def _signal(self, image: ImageData, status: str, *, distance: int | None = None,
                threshold: int | None = None, evidence: dict[str, Any]) -> SignalData:
        return SignalData(
            detector=self.pdq.name,
            detector_version=f"{self.pdq.name}-{self.pdq.version}.{self.version}",
            content_type="image",
            content_id=image.image_id,
            status=status,  # type: ignore[arg-type]
            post_id=image.post_id,
            thread_id=image.thread_id,
            author_id=image.author.id,
            distance=distance,
            threshold=float(threshold if threshold is not None else self.pdq.threshold),
            evidence=evidence,
        )

    def examples(self) -> Sequence[tuple[CloudEvent[Any], dict[str, str]]]:
        image = example_image
        return [
            (image("drawn", data_b64=example_png()), {"pdq": "clear"}),
            (image("not-an-image", data_b64=b"\x89PNG not really"), {"pdq": "unchecked"}),
            (image("empty", data_b64=b""), {"pdq": "unchecked"}),
            (image("by-url", url="https://img.example/x.png"), {"pdq": "unchecked"}),
        ]


def example_png(seed: int = 0, size: tuple[int, int] = (160, 120)) -> bytes:
    """A small drawn PNG with structure (PDQ quality ≥ 50), made with Pillow on demand."""
    import io
    import random

    from PIL import Image, ImageDraw

    rnd = random.Random(seed)
    img = Image.new("RGB", size, (rnd.randrange(256), rnd.randrange(256), rnd.randrange(256)))
    draw = ImageDraw.Draw(img)
    for _ in range(12):
        x0, y0 = rnd.randrange(size[0]), rnd.randrange(size[1])
        x1, y1 = x0 + rnd.randrange(10, size[0] // 2), y0 + rnd.randrange(10, size[1] // 2)
        colour = (rnd.randrange(256), rnd.randrange(256), rnd.randrange(256))
        if rnd.random() < 0.5:
            draw.ellipse([x0, y0, x1, y1], fill=colour)
        else:
            draw.rectangle([x0, y0, x1, y1], fill=colour)
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()

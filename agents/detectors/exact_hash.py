"""Exact-hash detector: md5/sha256 of the image bytes looked up in the hash banks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from agents.banks import BankEntry, BankIndex
from agents.detectors import example_image
from agents.hashes import HASH_TYPES, HashType
from streams.events import CloudEvent, ImageData, SignalData


class ExactHashDetector:
    """Emits one signal per exact hash type for every image: `match`, `clear` or `unchecked`."""

    signal_names: ClassVar[tuple[str, ...]] = ("sha256", "md5")
    version: ClassVar[str] = "1"

    def __init__(self, index: Callable[[], BankIndex]) -> None:
        # A callable, not an index: the bank store swaps its index on reload.
        self._index = index
        self._types: list[HashType] = [HASH_TYPES[n] for n in self.signal_names]

    def detect(self, event: CloudEvent[ImageData]) -> list[SignalData]:
        image = event.data
        problem = self._unchecked_reason(image)
        if problem is not None:
            return [self._signal(image, h, "unchecked", evidence={"reason": problem})
                    for h in self._types]
        assert image.data_b64 is not None
        index = self._index()
        signals = []
        for hash_type in self._types:
            value = hash_type.compute(image.data_b64)
            entries = index.lookup(hash_type.name, value)
            if entries:
                signals.append(self._signal(image, hash_type, "match", entries=entries))
            else:
                signals.append(self._signal(image, hash_type, "clear"))
        return signals

    def _unchecked_reason(self, image: ImageData) -> str | None:
        if image.data_b64 is None:
            # URL images are fetched by the hashing issue's allow-listed fetcher; until then
            # they cannot be checked, and an unchecked image is held, never allowed.
            return "url images are not fetched by this detector"
        if not image.data_b64:
            return "zero bytes"
        if image.sha256 is not None and HASH_TYPES["sha256"].compute(image.data_b64) != (
            image.sha256.lower()
        ):
            return "sha256 in the event does not match the bytes"
        return None

    def _signal(
        self,
        image: ImageData,
        hash_type: HashType,
        status: str,
        *,
        entries: Sequence[BankEntry] = (),
        evidence: dict[str, Any] | None = None,
    ) -> SignalData:
        if entries:
            # The strongest entry decides; all matched banks are listed (names, never hashes).
            worst = min(entries, key=lambda e: ("critical", "high", "medium", "low").index(
                e.severity))
            evidence = {
                "bank": worst.bank,
                "label": worst.label,
                "severity": worst.severity,
                "banks": sorted({e.bank for e in entries}),
            }
        return SignalData(
            detector=hash_type.name,
            detector_version=f"{hash_type.name}-{hash_type.version}",
            content_type="image",
            content_id=image.image_id,
            status=status,  # type: ignore[arg-type]
            post_id=image.post_id,
            thread_id=image.thread_id,
            author_id=image.author.id,
            distance=0 if entries else None,
            threshold=float(hash_type.threshold),
            evidence=evidence or {},
        )

    def examples(self) -> Sequence[tuple[CloudEvent[Any], dict[str, str]]]:
        image = example_image
        return [
            (image("benign", data_b64=b"\x89PNG not in any bank"),
             {"sha256": "clear", "md5": "clear"}),
            (image("by-url", url="https://img.example/x.png"),
             {"sha256": "unchecked", "md5": "unchecked"}),
            (image("empty", data_b64=b""), {"sha256": "unchecked", "md5": "unchecked"}),
            (image("bad-sum", data_b64=b"abc", sha256="0" * 64),
             {"sha256": "unchecked", "md5": "unchecked"}),
        ]


"""Detectors: pure functions from an input event to signals (no Kafka, no `await`).

Each detector is a small class behind the `Detector` protocol; its agent (`agents/<role>.py`)
iterates a topic, runs `detect` off the event loop when it is CPU work, and sends the signals.
Every detector ships `examples()` that the shared contract test (tests/unit/test_detector_contract)
runs, so a new detector gets checked without writing that test again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Protocol

from streams.events import Account, CloudEvent, ImageData, PostData, SignalData


class Detector(Protocol):
    """Turns one validated input event into the signals it has to say about it.

    A detector answers for every content it is given, also when it finds nothing (`status`
    "clear") or cannot check (`status` "unchecked", with the reason): `decide` waits for it.
    """

    #: Names of the signals this detector emits (the `detector` field); `decide` waits for them.
    signal_names: ClassVar[tuple[str, ...]]
    version: ClassVar[str]

    def detect(self, event: CloudEvent[Any]) -> list[SignalData]: ...

    def examples(self) -> Sequence[tuple[CloudEvent[Any], dict[str, str]]]:
        """Example inputs with the `status` expected per signal name (for the contract test)."""
        ...


#: A fixed threshold, or one per event (the policy's, which depends on staffed hours).
Threshold = float | Callable[[CloudEvent[Any]], float]


class ModelDetector:
    """What the classifier detectors share: a model whose `ref` (`name@version`) and score go
    into every signal, with the threshold in force for that event (thresholds live in the
    policy, not in the detector: DESIGN, issue 5)."""

    signal_names: ClassVar[tuple[str, ...]]
    version: ClassVar[str]
    content_type: ClassVar[str]
    model: Any
    _threshold: Threshold

    def threshold(self, event: CloudEvent[Any]) -> float:
        """The threshold in force for `event`."""
        return float(self._threshold(event) if callable(self._threshold) else self._threshold)

    def model_signal(self, data: ImageData | PostData, content_id: str, status: str,
                     score: float | None, threshold: float,
                     evidence: dict[str, Any]) -> SignalData:
        """This detector's signal about `data` (`score` None when it could not be checked)."""
        name = self.signal_names[0]
        return SignalData(
            detector=name,
            detector_version=f"{name}-{self.version}",
            content_type=self.content_type,  # type: ignore[arg-type]
            content_id=content_id,
            status=status,  # type: ignore[arg-type]
            post_id=data.post_id,
            thread_id=data.thread_id,
            author_id=data.author.id,
            score=round(score, 6) if score is not None else None,
            threshold=threshold,
            model=self.model.ref,
            evidence=evidence,
        )


def example_image(image_id: str, **fields: Any) -> CloudEvent[ImageData]:
    """An image event for a detector's `examples()` (author `u1`; `fields` as in ImageData)."""
    return CloudEvent(specversion="1.0", id=f"ex-{image_id}", source="examples",
                      type="forum.image.uploaded",
                      data=ImageData(image_id=image_id, author=Account(id="u1"), **fields))


def example_post(post_id: str, body: str, board: str | None = None) -> CloudEvent[PostData]:
    """A post event for a detector's `examples()` (thread `t1`, author `u1`)."""
    return CloudEvent(specversion="1.0", id=f"ex-{post_id}", source="examples",
                      type="forum.post.created",
                      data=PostData(post_id=post_id, thread_id="t1", author=Account(id="u1"),
                                    body=body, board=board))

"""Detectors: pure functions from an input event to signals (no Kafka, no `await`).

Each detector is a small class behind the `Detector` protocol; its agent (`agents/<role>.py`)
iterates a topic, runs `detect` off the event loop when it is CPU work, and sends the signals.
Every detector ships `examples()` that the shared contract test (tests/unit/test_detector_contract)
runs, so a new detector gets checked without writing that test again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Protocol

from streams.events import CloudEvent, SignalData


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

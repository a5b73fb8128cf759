"""One contract test for every detector: its own `examples()` through `detect` (pytx style).

A new detector class under `agents.detectors` is found automatically; the test then fails until
it gets a factory in `FACTORIES` (how to build it for a test), so no detector escapes the
contract.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import pkgutil
from collections.abc import Callable
from typing import Any

import pytest

import agents.detectors
from agents.banks import BankIndex, parse_bank
from agents.detectors import Detector
from agents.detectors.exact_hash import ExactHashDetector
from agents.detectors.image_hash import PerceptualHashDetector
from agents.detectors.nsfw_image import NsfwImageDetector
from agents.detectors.text_abuse import TextAbuseDetector
from models import load_model
from models.build import ensure_built
from streams.codec import decode, encode
from streams.events import Account, CloudEvent, ImageData, SignalData
from streams.topics import SIGNALS

from .factories import png_bytes


def _built_model(name: str) -> Any:
    ensure_built()  # `make` builds it at install time; this covers a bare `pytest`
    return load_model(name)


#: How to build each detector for the contract test (empty banks, no models downloaded).
FACTORIES: dict[type, Callable[[], Any]] = {
    ExactHashDetector: lambda: ExactHashDetector(lambda: BankIndex()),
    PerceptualHashDetector: lambda: PerceptualHashDetector(lambda: BankIndex()),
    # Classifiers run their real models (from installed packages / the install-time build).
    NsfwImageDetector: lambda: NsfwImageDetector(load_model("open_nsfw"), 0.5),
    TextAbuseDetector: lambda: TextAbuseDetector(_built_model("alt_profanity_check"), 0.7),
}


def discovered_detectors() -> list[type]:
    """Every class in `agents.detectors.*` that has the `Detector` protocol's members."""
    found = []
    for module_info in pkgutil.iter_modules(agents.detectors.__path__):
        module = importlib.import_module(f"{agents.detectors.__name__}.{module_info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__ and all(
                hasattr(cls, name) for name in ("signal_names", "version", "detect", "examples")
            ):
                found.append(cls)
    return found


def test_every_detector_has_a_factory() -> None:
    missing = [c.__qualname__ for c in discovered_detectors() if c not in FACTORIES]
    assert not missing, f"add these detectors to FACTORIES: {missing}"
    assert discovered_detectors(), "discovery found nothing: the contract test would be vacuous"


def content_id_of(event: CloudEvent[Any]) -> str:
    data = event.data
    for field in ("image_id", "post_id", "report_id"):
        value = getattr(data, field, None)
        if value is not None:
            return str(value)
    raise AssertionError(f"no content id on {type(data).__name__}")


@pytest.mark.parametrize("factory", list(FACTORIES.values()),
                         ids=[c.__qualname__ for c in FACTORIES])
def test_detector_contract(factory: Callable[[], Any]) -> None:
    detector: Detector = factory()
    assert callable(detector.detect) and callable(detector.examples)
    assert detector.signal_names and len(set(detector.signal_names)) == len(detector.signal_names)
    assert detector.version
    examples = list(detector.examples())
    assert examples, "a detector must ship examples"
    statuses_seen: set[str] = set()
    for event, expected in examples:
        assert set(expected) == set(detector.signal_names), "examples name every signal"
        signals = detector.detect(event)
        assert all(isinstance(s, SignalData) for s in signals)
        got = {s.detector: s.status for s in signals}
        assert len(got) == len(signals), "one signal per signal name"
        assert got == expected, f"example {event.id}"
        statuses_seen.update(got.values())
        for s in signals:
            assert s.detector in detector.signal_names
            assert s.detector_version
            assert s.content_id == content_id_of(event)
            if s.status == "unchecked":
                assert s.evidence.get("reason"), "unchecked signals say why"
            if s.status == "match":
                assert s.distance is not None or s.score is not None
            # every signal is a valid wire event
            assert decode(SIGNALS, encode(SIGNALS, s, source="t")[1]).data == s
    assert "clear" in statuses_seen, "examples include an input with nothing found"


# ------------------------------------------------------------------------------- exact hashes

HEADER = "signal_type,signal,bank,label,severity\n"


def image_event(image: bytes, **fields: Any) -> CloudEvent[ImageData]:
    return CloudEvent(
        specversion="1.0", id="e-1", source="forum/test", type="forum.image.uploaded",
        data=ImageData(image_id="img-7", post_id="p-7", thread_id="t-7",
                       author=Account(id="u-7"), data_b64=image, **fields),
    )


def detect_with_bank(bank_csv: str, image: bytes, **fields: Any) -> dict[str, SignalData]:
    index = BankIndex(parse_bank(HEADER + bank_csv))
    signals = ExactHashDetector(lambda: index).detect(image_event(image, **fields))
    return {s.detector: s for s in signals}


def test_sha256_bank_match_on_a_generated_png() -> None:
    image = png_bytes()
    assert image.startswith(b"\x89PNG")
    sha = hashlib.sha256(image).hexdigest()
    signals = detect_with_bank(f"sha256,{sha},ncmec-sample,csam,critical\n", image,
                               sha256=sha.upper())
    sig = signals["sha256"]
    assert sig.status == "match"
    assert sig.distance == 0
    assert sig.evidence["bank"] == "ncmec-sample"
    assert sig.evidence["label"] == "csam"
    assert sig.evidence["severity"] == "critical"
    assert (sig.content_id, sig.post_id, sig.thread_id, sig.author_id) == (
        "img-7", "p-7", "t-7", "u-7")
    assert signals["md5"].status == "clear" and signals["md5"].distance is None
    assert sha not in repr(sig.evidence)


def test_md5_bank_match_on_a_generated_png() -> None:
    image = png_bytes(color=(0, 90, 200))
    md5 = hashlib.md5(image).hexdigest()
    signals = detect_with_bank(f"md5,{md5.upper()},partner,gore,high\n", image)
    assert signals["md5"].status == "match"
    assert signals["md5"].distance == 0
    assert {k: signals["md5"].evidence[k] for k in ("bank", "label", "severity")} == {
        "bank": "partner", "label": "gore", "severity": "high"}
    assert signals["sha256"].status == "clear"


def test_a_different_image_does_not_match() -> None:
    listed, other = png_bytes(color=(1, 2, 3)), png_bytes(color=(1, 2, 4))
    assert listed != other
    sha = hashlib.sha256(listed).hexdigest()
    signals = detect_with_bank(f"sha256,{sha},b,csam,critical\n", other)
    assert {s.status for s in signals.values()} == {"clear"}


def test_strongest_entry_decides_and_all_banks_are_listed() -> None:
    image = png_bytes()
    sha = hashlib.sha256(image).hexdigest()
    signals = detect_with_bank(
        f"sha256,{sha},zeta,spam,low\nsha256,{sha},alpha,csam,critical\n", image)
    evidence = signals["sha256"].evidence
    assert (evidence["bank"], evidence["severity"]) == ("alpha", "critical")
    assert evidence["banks"] == ["alpha", "zeta"]


def test_detector_sees_a_reloaded_index() -> None:
    image = png_bytes()
    holder = {"index": BankIndex()}
    detector = ExactHashDetector(lambda: holder["index"])
    assert {s.status for s in detector.detect(image_event(image))} == {"clear"}
    holder["index"] = BankIndex(parse_bank(
        HEADER + f"sha256,{hashlib.sha256(image).hexdigest()},b,l,high\n"))
    assert {s.detector: s.status for s in detector.detect(image_event(image))}["sha256"] == "match"

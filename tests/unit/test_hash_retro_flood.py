"""Retroactive matching (issue 4 item 5) and the bank flood guard (item 7), without a broker."""

from __future__ import annotations

import dataclasses
import functools
from datetime import datetime, timezone

import numpy as np

from agents.bank_flood import FloodGuard
from agents.banks import BankIndex, entry_ref, parse_bank
from agents.decide import Decider
from agents.detectors.image_hash import PerceptualHashDetector
from agents.hashes import Pdq
from agents.hashing import Fetched, ImageHasher
from agents.imaging import DecodeLimits
from agents.policy import load_default_policy
from agents.recent_hashes import RecentImages
from streams.events import Account, CloudEvent, ImageData

from .test_hash_pdq import HEADER, drawn, encode

T0 = datetime(2025, 2, 4, 12, 0, tzinfo=timezone.utc).timestamp()


def event(image_id: str, data: bytes, at: float = T0) -> Fetched:
    return Fetched(CloudEvent(
        specversion="1.0", id=f"e-{image_id}", source="test", type="forum.image.uploaded",
        time=datetime.fromtimestamp(at, timezone.utc),
        data=ImageData(image_id=image_id, post_id=f"p-{image_id}", thread_id="t-1",
                       author=Account(id="u-1"), data_b64=data)), data)


def bank_of(*pairs: tuple[bytes, str]) -> BankIndex:
    pdq = Pdq()
    return BankIndex(parse_bank(HEADER + "".join(
        f"pdq,{pdq.compute(data)},{bank},csam,critical\n" for data, bank in pairs)))


def pdq_signal(hasher: ImageHasher, item: Fetched):  # type: ignore[no-untyped-def]
    return next(s for s in hasher.signals(item) if s.detector == "pdq")


# ------------------------------------------------------------------------------ retroactive


def test_a_bank_gaining_a_hash_finds_the_recent_image_that_now_matches() -> None:
    original, other = encode(drawn(11)), encode(drawn(12))
    index = BankIndex()
    recent = RecentImages(horizon_s=72 * 3600, max_images=100)
    hasher = ImageHasher(lambda: index, DecodeLimits(), recent=recent)
    # a JPEG repost of picture 11 and an unrelated picture pass while the bank is empty
    assert pdq_signal(hasher, event("img-a", encode(drawn(11), "JPEG", quality=60))
                      ).status == "clear"
    assert pdq_signal(hasher, event("img-b", other)).status == "clear"
    assert len(recent) == 2
    old, index = index, bank_of((original, "partner"))
    signals, per_bank = hasher.retroactive(old, index, now=T0 + 3600)
    assert [s.content_id for s in signals] == ["img-a"]
    signal = signals[0]
    assert signal.status == "match" and signal.evidence["retroactive"] is True
    assert signal.evidence["bank"] == "partner" and signal.post_id == "p-img-a"
    assert "pdq" not in signal.evidence  # bank contents never leave in a signal
    assert per_bank == {"partner": 1}
    # the same reload seen again (or a later one adding nothing for it): no second signal
    assert hasher.retroactive(old, index, now=T0 + 3600) == ([], {})


def test_only_rows_the_reload_added_are_searched_and_the_horizon_applies() -> None:
    first, second = encode(drawn(21)), encode(drawn(22))
    old = bank_of((first, "partner"))
    new = bank_of((first, "partner"), (second, "partner"))
    added = new.added_pdq_rows(old)
    assert len(added) == 1
    # the same hash in another bank is new for that bank
    assert len(bank_of((first, "partner"), (first, "other")).added_pdq_rows(old)) == 1
    recent = RecentImages(horizon_s=3600, max_images=100)
    hasher = ImageHasher(lambda: BankIndex(), DecodeLimits(), recent=recent)
    hasher.signals(event("img-old", second, at=T0))
    # two hours later the image is past the 1 h horizon: forgotten, nothing to match
    assert hasher.retroactive(old, new, now=T0 + 7200) == ([], {})
    assert len(recent) == 0


def test_recent_images_are_bounded() -> None:
    recent = RecentImages(max_images=3)
    for i in range(10):
        recent.add(f"i{i}", None, None, "u", ["00" * 32], [(0, "original")], False, at=T0)
    recent.add("i9", None, None, "u", ["00" * 32], [(0, "original")], False, at=T0)
    assert len(recent) == 3


def test_a_negative_bank_suppresses_a_retroactive_match() -> None:
    data = encode(drawn(31))
    recent = RecentImages()
    hasher = ImageHasher(lambda: BankIndex(), DecodeLimits(), recent=recent)
    hasher.signals(event("img-n", data))
    from agents.banks import parse_banks_config
    pdq = Pdq().compute(data)
    new = BankIndex(parse_bank(HEADER + f"pdq,{pdq},partner,csam,critical\n"
                               f"pdq,{pdq},fp,known,low\n"),
                    parse_banks_config('[banks.fp]\nkind = "negative"\n'))
    hasher.perceptual._index = lambda: new
    assert hasher.retroactive(BankIndex(), new, now=T0) == ([], {})


def test_decide_acts_on_a_retroactive_match_for_content_it_already_allowed() -> None:
    policy = dataclasses.replace(load_default_policy(),
                                 required={"image": ("pdq",), "post": ()})
    decider = functools.partial(Decider, policy=policy)(5.0)
    data = encode(drawn(41))
    hasher = ImageHasher(lambda: BankIndex(), DecodeLimits(), recent=RecentImages())
    clear = pdq_signal(hasher, event("img-d", data))
    entry = decider.add(clear, now=0.0)
    assert entry is not None
    first = decider.try_decide(entry, now=10.0)
    assert first is not None and first.verdict == "allow"
    new = bank_of((data, "partner"))
    hasher.perceptual._index = lambda: new
    (retro,), _ = hasher.retroactive(BankIndex(), new, now=T0)
    again = decider.add(retro, now=20.0)
    assert again is not None
    decision = decider.try_decide(again, now=20.0)
    assert decision is not None and decision.verdict == "block"
    assert decision.action == "block" and decision.decision_id != first.decision_id
    # a late ordinary signal for it is still ignored
    assert decider.add(clear, now=21.0) is None


# ------------------------------------------------------------------------------ flood guard


def test_flood_guard_quarantines_an_entry_matching_many_distinct_images() -> None:
    guard = FloodGuard(window_s=3600, min_images=5, factor=10)
    results = [guard.observe("ref1", "b", "csam", f"img-{i}", T0 + i) for i in range(5)]
    assert results == [False, False, False, False, True]
    # the same image again does not count twice; after quarantine everything is held
    assert guard.observe("ref1", "b", "csam", "img-0", T0 + 10) is True
    assert guard.quarantined("ref1", T0 + 10)
    (alert,) = guard.drain_alerts()
    assert alert.kind == "bank_flood" and alert.evidence["entry_ref"] == "ref1"
    assert alert.evidence["images"] == 5 and alert.dedup_key == "bank_flood:ref1"
    assert guard.drain_alerts() == []
    assert not guard.quarantined("ref1", T0 + 86400 + 100)  # quarantine ends


def test_flood_guard_repeats_of_one_image_and_spread_out_matches_do_not_trip() -> None:
    guard = FloodGuard(window_s=3600, min_images=5, factor=10)
    assert not any(guard.observe("r", "b", "l", "same", T0 + i) for i in range(50))
    # one new image every 2 hours: never 5 in one window
    assert not any(guard.observe("s", "b", "l", f"i{i}", T0 + 7200 * i) for i in range(50))


def test_flood_guard_compares_with_the_entry_baseline() -> None:
    guard = FloodGuard(window_s=3600, min_images=5, factor=10, baseline_s=7 * 86400)
    # a steady entry: 3 images an hour for six days (baseline ≈ 3 per window)
    for hour in range(6 * 24):
        for i in range(3):
            assert not guard.observe("busy", "b", "l", f"h{hour}-{i}", T0 + hour * 3600 + i)
    start = T0 + 6 * 24 * 3600
    # 20 in the next hour: above min_images but under 10× its baseline — not a flood
    assert not any(guard.observe("busy", "b", "l", f"n{i}", start + i) for i in range(20))
    # a new entry with no history trips at min_images; the busy one only near 10× baseline
    assert any(guard.observe("busy", "b", "l", f"m{i}", start + 100 + i) for i in range(40))
    assert 25 <= guard.drain_alerts()[0].evidence["images"] <= 40


def test_detector_stops_acting_on_a_quarantined_entry_and_alerts_once() -> None:
    data = encode(drawn(51))
    index = bank_of((data, "memes"))
    flood = FloodGuard(min_images=3)
    detector = PerceptualHashDetector(lambda: index, flood=flood)
    statuses = []
    for i in range(6):
        image = ImageData(image_id=f"img-{i}", author=Account(id=f"u{i}"))
        signal = detector.detect_bytes(image, data, at=T0 + i)
        statuses.append(signal.status)
        if signal.status == "clear":
            assert signal.evidence["quarantined_banks"] == ["memes"]
            assert "pdq" not in signal.evidence  # the image's hash = the bank entry
    assert statuses == ["match", "match", "clear", "clear", "clear", "clear"]
    (alert,) = flood.drain_alerts()
    pdq = Pdq().compute(data)
    assert alert.evidence["entry_ref"] == entry_ref("memes", bytes.fromhex(pdq))
    assert pdq not in repr(alert)


def test_entry_refs_are_stable_and_do_not_reveal_the_hash() -> None:
    value = bytes(np.arange(32, dtype=np.uint8))
    assert entry_ref("b", value) == entry_ref("b", value) != entry_ref("c", value)
    assert value.hex() not in entry_ref("b", value) and len(entry_ref("b", value)) == 16

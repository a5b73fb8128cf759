"""agents.policy.decide_content under the shipped default policy: signals → decision."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping

import msgspec
import pytest

from agents.banks import BankIndex, parse_bank
from agents.detectors.exact_hash import ExactHashDetector
from agents.policy import Decision, decide_content, decision_id, load_default_policy
from streams.events import Account, CloudEvent, ImageData, SignalData

from .factories import match_signal, png_bytes, signal


DEFAULT = load_default_policy()
#: The default rules with only the exact hashes required (the skeleton's setup), so these tests
#: do not depend on which other detectors the shipped default waits for.
EXACT = dataclasses.replace(DEFAULT, required={"image": ("sha256", "md5"), "post": ()})
POLICY_VERSION = DEFAULT.version


def by_name(*signals: SignalData) -> dict[str, SignalData]:
    return {s.detector: s for s in signals}


def _decide(signals: Mapping[str, SignalData], *, deadline_passed: bool = False,
            content_type: str = "image", content_id: str = "i-1") -> Decision | None:
    return decide_content(EXACT, content_type, content_id, signals,
                          deadline_passed=deadline_passed)


def test_images_wait_for_both_exact_hashes() -> None:
    assert {"sha256", "md5"} <= set(DEFAULT.required["image"])
    assert DEFAULT.required["post"] == ("text_abuse",)  # posts wait for the classifier


# ------------------------------------------------------------------------------- block


@pytest.mark.parametrize("deadline_passed", [False, True])
def test_match_blocks_immediately_even_with_missing_signals(deadline_passed: bool) -> None:
    decision = _decide(by_name(match_signal("sha256", severity="high")),
                       deadline_passed=deadline_passed)
    assert decision is not None
    assert decision.verdict == "block"
    assert decision.action == "block"
    assert decision.severity == "high"  # from the bank entry
    assert decision.policy_version == POLICY_VERSION
    (reason,) = decision.reasons
    assert (reason.detector, reason.signal, reason.distance, reason.bank, reason.label) == (
        "sha256", "bank_match", 0, "bank-a", "csam")


def test_match_wins_over_unchecked_and_clear() -> None:
    decision = _decide(by_name(signal("md5", "unchecked", evidence={"reason": "x"}),
                               match_signal("sha256")))
    assert decision is not None and decision.verdict == "block"


def test_most_severe_bank_entry_sets_severity_and_all_matches_are_reasons() -> None:
    decision = _decide(by_name(match_signal("sha256", bank="b1", severity="medium"),
                               match_signal("md5", bank="b2", label="gore", severity="critical")))
    assert decision is not None
    assert decision.severity == "critical"
    assert [(r.detector, r.bank, r.label) for r in decision.reasons] == [
        ("md5", "b2", "gore"), ("sha256", "b1", "csam")]  # sorted by detector: stable output


@pytest.mark.parametrize(("bank_severity", "alert_severity"),
                         [("critical", "critical"), ("high", "high"), ("low", "high")])
def test_hash_match_always_raises_a_paging_alert(bank_severity: str, alert_severity: str) -> None:
    decision = _decide(by_name(match_signal("sha256", severity=bank_severity)))
    assert decision is not None
    (alert,) = decision.alerts
    assert alert.kind == "hash_match"
    assert alert.severity == alert_severity
    assert alert.dedup_key == "hash_match:image:i-1"
    assert alert.evidence["banks"] == ["bank-a"]
    assert "bank-a" in alert.summary and "i-1" in alert.summary


def test_no_hash_value_anywhere_in_the_decision_or_alert() -> None:
    # end to end from real bytes: the detector, then the policy; the hash values must not leak
    image = png_bytes()
    sha, md5 = hashlib.sha256(image).hexdigest(), hashlib.md5(image).hexdigest()
    index = BankIndex(parse_bank(
        "signal_type,signal,bank,label,severity\n"
        f"sha256,{sha},ncmec,csam,critical\nmd5,{md5},partner,csam,high\n"))
    event = CloudEvent(specversion="1.0", id="e", source="s", type="forum.image.uploaded",
                       data=ImageData(image_id="i-1", author=Account(id="u"), data_b64=image))
    signals = ExactHashDetector(lambda: index).detect(event)
    decision = _decide(by_name(*signals))
    assert decision is not None and decision.verdict == "block"
    dumped = json.dumps(msgspec.to_builtins(
        {"signals": signals, "reasons": decision.reasons}), default=str) + repr(decision)
    for value in (sha, md5, sha[:16], md5[:16]):
        assert value not in dumped
        assert value not in repr(decision.alerts)


# ------------------------------------------------------------------------------- allow / hold


def test_all_clear_allows() -> None:
    decision = _decide(by_name(signal("intake"), signal("sha256"), signal("md5")))
    assert decision is not None
    assert (decision.verdict, decision.action, decision.reasons, decision.alerts) == (
        "allow", None, (), ())


def test_post_without_required_signals_allows_at_once() -> None:
    decision = _decide(by_name(signal("intake", content_type="post", content_id="p-1")),
                       content_type="post", content_id="p-1")
    assert decision is not None and decision.verdict == "allow"


def test_unchecked_holds_with_the_reason() -> None:
    decision = _decide(by_name(signal("sha256", "unchecked", evidence={"reason": "zero bytes"}),
                               signal("md5", "unchecked", evidence={"reason": "zero bytes"})))
    assert decision is not None
    assert (decision.verdict, decision.action) == ("hold", "hold_for_review")
    assert {(r.detector, r.signal) for r in decision.reasons} == {
        ("sha256", "unchecked: zero bytes"), ("md5", "unchecked: zero bytes")}
    assert decision.alerts == ()


def test_one_unchecked_among_clear_holds() -> None:
    decision = _decide(by_name(signal("sha256"), signal("md5", "unchecked")))
    assert decision is not None and decision.verdict == "hold"


def test_missing_required_signal_waits_before_the_deadline() -> None:
    assert _decide(by_name(signal("intake"), signal("sha256"))) is None
    assert _decide({}) is None


def test_missing_required_signal_holds_after_the_deadline_naming_it() -> None:
    decision = _decide(by_name(signal("intake"), signal("sha256")), deadline_passed=True)
    assert decision is not None
    assert (decision.verdict, decision.action) == ("hold", "hold_for_review")
    assert [(r.detector, r.signal) for r in decision.reasons] == [
        ("md5", "no answer before deadline")]


def test_a_classifier_match_is_never_allowed() -> None:
    # regression: the built-in policy ignored a `match` without `distance` and allowed it
    decision = _decide(by_name(signal("sha256"), signal("md5"),
                               signal("nsfw_image", "match", score=0.97, threshold=0.8)))
    assert decision is not None and decision.verdict != "allow"


# ------------------------------------------------------------------------------- ids


def test_decision_ids_are_deterministic_and_distinct_per_verdict() -> None:
    block = _decide(by_name(match_signal("sha256")))
    block_again = _decide(by_name(match_signal("sha256"), signal("md5")))
    hold = _decide(by_name(signal("sha256", "unchecked"), signal("md5")))
    allow = _decide(by_name(signal("sha256"), signal("md5")))
    other = _decide(by_name(signal("sha256"), signal("md5")), content_id="i-2")
    assert block is not None and block_again is not None and hold is not None
    assert allow is not None and other is not None
    assert block.decision_id == block_again.decision_id
    ids = [block.decision_id, hold.decision_id, allow.decision_id, other.decision_id]
    assert len(set(ids)) == 4
    assert all(i.startswith("dec-") for i in ids)
    assert allow.decision_id == decision_id("image", "i-1", "allow", POLICY_VERSION)
    assert decision_id("image", "i-1", "allow", POLICY_VERSION) != decision_id(
        "post", "i-1", "allow", POLICY_VERSION)
    assert decision_id("image", "i-1", "allow", "v2") != allow.decision_id

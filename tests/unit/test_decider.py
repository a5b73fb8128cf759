"""agents.decide.Decider: the join state of the decide agent, driven with explicit `now`;
reviews; and the events a decision turns into."""

from __future__ import annotations

import dataclasses
import functools
from datetime import datetime, timezone

import msgspec

from agents.decide import Decider, Pending, decision_outputs, review_outputs
from agents.policy import load_default_policy, review_decision_id
from streams.events import AlertData, ReviewData, SignalData, TakedownData, VerdictData
from streams.topics import ALERTS, SIGNALS, TAKEDOWNS, VERDICTS

from .factories import match_signal, signal

DEADLINE = 5.0
#: The default rules with the exact hashes required (these tests predate other detectors).
POLICY = dataclasses.replace(load_default_policy(),
                             required={"image": ("sha256", "md5"), "post": ()})
Decider = functools.partial(Decider, policy=POLICY)  # type: ignore[misc]
NOW = datetime(2025, 2, 4, 2, 13, 6, tzinfo=timezone.utc)


def test_decides_once_all_required_signals_are_in() -> None:
    decider = Decider(DEADLINE)
    entry = decider.add(signal("intake"), now=100.0)
    assert entry is not None
    assert decider.try_decide(entry, now=100.0) is None
    assert decider.add(signal("sha256"), now=100.5) is entry
    assert decider.try_decide(entry, now=100.5) is None
    decider.add(signal("md5"), now=101.0)
    decision = decider.try_decide(entry, now=101.0)
    assert decision is not None and decision.verdict == "allow"
    assert decider.pending == {}
    assert decider.decided == {"image:i-1": decision.decision_id}


def test_match_blocks_without_waiting_for_other_detectors() -> None:
    decider = Decider(DEADLINE)
    decider.add(signal("intake"), now=0.0)
    entry = decider.add(match_signal("sha256"), now=0.1)
    assert entry is not None
    decision = decider.try_decide(entry, now=0.1)
    assert decision is not None and decision.verdict == "block"


def test_signals_for_an_already_decided_content_are_ignored() -> None:
    decider = Decider(DEADLINE)
    entry = decider.add(signal("intake"), now=0.0)
    decider.add(match_signal("sha256"), now=0.0)
    assert entry is not None
    first = decider.try_decide(entry, now=0.0)
    assert first is not None
    # redelivered and late signals: no new entry, no second decision
    assert decider.add(match_signal("sha256"), now=1.0) is None
    assert decider.add(signal("md5"), now=1.0) is None
    assert decider.pending == {}
    assert decider.overdue(now=1000.0) == []
    assert decider.decided["image:i-1"] == first.decision_id


def test_contents_are_kept_apart_by_type_and_id() -> None:
    decider = Decider(DEADLINE)
    a = decider.add(signal("intake", content_id="x"), now=0.0)
    b = decider.add(signal("intake", content_id="x", content_type="post"), now=0.0)
    c = decider.add(signal("intake", content_id="y"), now=0.0)
    assert a is not None and b is not None and c is not None
    assert len({id(a), id(b), id(c)}) == 3
    post_decision = decider.try_decide(b, now=0.0)  # posts need no detector in this policy
    assert post_decision is not None and post_decision.verdict == "allow"
    assert set(decider.pending) == {"image:x", "image:y"}


def test_waits_for_intake_unless_overdue() -> None:
    decider = Decider(DEADLINE)
    entry = decider.add(signal("sha256"), now=10.0)
    assert entry is not None
    decider.add(signal("md5"), now=10.2)
    assert decider.try_decide(entry, now=10.2) is None  # no context yet (post/thread ids)
    assert decider.try_decide(entry, now=14.9) is None
    decision = decider.try_decide(entry, now=15.0)  # deadline from the first signal
    assert decision is not None and decision.verdict == "allow"


def test_match_also_waits_for_intake_until_overdue() -> None:
    decider = Decider(DEADLINE)
    entry = decider.add(match_signal("sha256"), now=0.0)
    assert entry is not None
    assert decider.try_decide(entry, now=1.0) is None
    decider.add(signal("intake"), now=1.0)
    decision = decider.try_decide(entry, now=1.0)
    assert decision is not None and decision.verdict == "block"


def test_missing_detector_is_held_after_the_deadline() -> None:
    decider = Decider(DEADLINE)
    entry = decider.add(signal("intake"), now=0.0)
    decider.add(signal("sha256"), now=4.0)  # later signals do not move the deadline
    assert entry is not None
    assert decider.overdue(now=4.99) == []
    assert decider.overdue(now=5.0) == [entry]
    decision = decider.try_decide(entry, now=5.0)
    assert decision is not None and decision.verdict == "hold"
    assert [r.detector for r in decision.reasons] == ["md5"]
    assert decider.overdue(now=100.0) == []


def test_latest_signal_per_detector_wins() -> None:
    decider = Decider(DEADLINE)
    decider.add(signal("intake"), now=0.0)
    decider.add(signal("sha256", "unchecked"), now=0.0)
    entry = decider.add(signal("sha256"), now=0.1)
    assert isinstance(entry, Pending)
    assert entry.signals["sha256"].status == "clear"
    assert entry.context() is entry.signals["intake"]


# ------------------------------------------------------------------------------- dedup


def test_the_same_content_sent_twice_gets_one_decision() -> None:
    decider = Decider(DEADLINE)
    entry = decider.add(signal("intake"), now=0.0)
    decider.add(match_signal("sha256"), now=0.0)
    assert entry is not None
    first = decider.try_decide(entry, now=0.0)
    assert first is not None
    # the forum resends the image: intake and hashing signal again
    for detector in ("intake", "sha256", "md5"):
        assert decider.add(signal(detector), now=2.0) is None
    assert decider.pending == {} and decider.overdue(now=100.0) == []


def foreign_verdict(verdict: str = "allow", content_id: str = "i-1") -> VerdictData:
    """A verdict another decide worker published (read back by the follower)."""
    return VerdictData(content_type="image", content_id=content_id, verdict=verdict,
                       decision_id=f"dec-elsewhere-{content_id}", policy_version="v1")


def test_a_window_for_content_decided_elsewhere_is_superseded() -> None:
    """Rebalance: hashing on the new owner re-emits a signal for an image another worker has
    decided; this worker's window must not end in a second (hold) decision."""
    decider = Decider(DEADLINE)
    entry = decider.add(signal("sha256"), now=0.0)
    assert entry is not None and not decider.superseded(entry)
    decider.remember_verdict(foreign_verdict())
    assert decider.overdue(now=DEADLINE) == [entry]
    assert decider.superseded(entry)
    assert decider.pending == {} and decider.overdue(now=100.0) == []
    assert decider.add(signal("md5"), now=6.0) is None  # later signals: no window at all
    assert decider.decided["image:i-1"] == "dec-elsewhere-i-1"


def test_a_verdict_read_back_keeps_this_workers_own_decision() -> None:
    decider = Decider(DEADLINE)
    entry = decider.add(signal("intake"), now=0.0)
    decider.add(match_signal("sha256"), now=0.0)
    assert entry is not None
    own = decider.try_decide(entry, now=0.0)
    assert own is not None
    decider.remember_verdict(foreign_verdict("hold"))
    assert decider.decided["image:i-1"] == own.decision_id


def test_a_retroactive_redecision_is_never_superseded() -> None:
    decider = Decider(DEADLINE)
    decider.remember_verdict(foreign_verdict())
    retro = match_signal("sha256")
    retro = msgspec.structs.replace(retro, evidence={**retro.evidence, "retroactive": True})
    entry = decider.add(retro, now=50.0)
    assert entry is not None and entry.redecide
    decider.remember_verdict(foreign_verdict())  # the follower re-reads the old verdict
    assert not decider.superseded(entry)
    decision = decider.try_decide(entry, now=50.0, at_deadline=False)  # decided at once
    assert decision is not None and decision.verdict == "block"


def test_incomplete_windows_wait_for_the_deadline_pass() -> None:
    """The signal path decides complete windows only; an overdue one is left to the deadline
    pass, which first reads the verdicts other workers published."""
    decider = Decider(DEADLINE)
    entry = decider.add(signal("intake"), now=0.0)
    decider.add(signal("sha256"), now=0.0)
    assert entry is not None
    assert decider.try_decide(entry, now=9.0, at_deadline=False) is None
    decider.add(signal("md5"), now=9.0)  # complete, if late: decided on the signal path
    decision = decider.try_decide(entry, now=9.0, at_deadline=False)
    assert decision is not None and decision.verdict == "allow"


def test_own_shadow_signals_are_not_joined() -> None:
    decider = Decider(DEADLINE)
    assert decider.add(signal("shadow:pdq_near_match", "match"), now=0.0) is None
    assert decider.pending == {}


# ------------------------------------------------------------------------------- reviews


def _blocked(decider: Decider) -> tuple[Pending, object]:  # type: ignore[valid-type]
    entry = decider.add(signal("intake", post_id="p-1", thread_id="t-1", author_id="u-1",
                               evidence={"event_time": "2025-02-04T02:13:05+00:00"}), now=0.0)
    decider.add(match_signal("sha256"), now=0.0)
    assert entry is not None
    decision = decider.try_decide(entry, now=0.0)
    assert decision is not None and decision.action == "block"
    return entry, decision


def test_restore_review_undoes_the_takedown_once() -> None:
    decider = Decider(DEADLINE)
    _, decision = _blocked(decider)
    review = ReviewData(decision_id=decision.decision_id, outcome="restore", reviewer="mod-1",
                        content_id="i-1")
    result, effect, record = decider.review(review)
    assert result == "applied" and effect is not None and record is not None
    assert effect.decision is not None
    assert (effect.decision.action, effect.decision.verdict) == ("restore", "allow")
    assert effect.decision.decision_id == review_decision_id(decision.decision_id, "restore")
    assert effect.decision.decision_id != decision.decision_id
    assert [a.resolved for a in effect.alerts] == [True]  # the hash_match incident is handled
    assert decider.review(review)[0] == "duplicate"

    outputs = review_outputs(effect, record, review, now=NOW, event_time=NOW)
    by_topic = {o.spec.name: o for o in outputs}
    takedown = by_topic[TAKEDOWNS.name].data
    assert isinstance(takedown, TakedownData)
    assert (takedown.action, takedown.target.id, takedown.target.post_id) == (
        "restore", "i-1", "p-1")
    verdict = by_topic[VERDICTS.name].data
    assert isinstance(verdict, VerdictData) and verdict.verdict == "allow"
    alert = by_topic[ALERTS.name].data
    assert isinstance(alert, AlertData)
    assert alert.evidence["resolved"] is True and alert.dedup_key == "hash_match:image:i-1"


def test_confirm_makes_final_and_escalate_pages() -> None:
    decider = Decider(DEADLINE)
    _, decision = _blocked(decider)
    result, effect, record = decider.review(
        ReviewData(decision_id=decision.decision_id, outcome="confirm"))
    assert result == "applied" and effect is not None and effect.decision is None
    assert record is not None and record.final
    escalate = ReviewData(decision_id=decision.decision_id, outcome="escalate", reviewer="mod-2",
                          note="looks like a wider raid")
    _, effect, record = decider.review(escalate)
    assert effect is not None
    (alert,) = effect.alerts
    assert (alert.kind, alert.severity, alert.resolved) == ("review_escalated", "high", False)
    assert "looks like a wider raid" in alert.summary
    assert "pagerduty" in POLICY.route(alert.kind, alert.severity, NOW)
    (out,) = review_outputs(effect, record, escalate, now=NOW, event_time=NOW)
    assert out.spec is ALERTS and out.data.target is not None  # type: ignore[attr-defined]


def _replay(decider: Decider, outputs: list[object]) -> None:  # type: ignore[valid-type]
    """Feed `outputs` to `decider` as the follower does after a restart (in topic order)."""
    for out in outputs:
        data = out.data  # type: ignore[attr-defined]
        if isinstance(data, VerdictData):
            decider.remember_verdict(data)
        elif isinstance(data, TakedownData):
            decider.remember_takedown(data)
        elif isinstance(data, AlertData):
            decider.remember_alert(data)


def test_reviews_applied_before_a_restart_are_duplicates_after_it() -> None:
    """Regression: `reviewed` lived in memory only, so a review redelivered after a restart
    applied again. The restarted worker learns it from the outputs it reads back."""
    before = Decider(DEADLINE)
    entry, decision = _blocked(before)
    outputs = decision_outputs(decision, entry.target(), now=NOW, event_time=NOW)
    allowed_entry = before.add(signal("intake", content_type="post", content_id="p-9",
                                      post_id="p-9"), now=0.0)
    assert allowed_entry is not None
    allowed = before.try_decide(allowed_entry, now=0.0)
    assert allowed is not None and allowed.action is None
    outputs += decision_outputs(allowed, allowed_entry.target(), now=NOW, event_time=NOW)
    reviews = [ReviewData(decision_id=decision.decision_id, outcome="restore"),
               ReviewData(decision_id=decision.decision_id, outcome="escalate"),
               ReviewData(decision_id=allowed.decision_id, outcome="confirm")]
    for review in reviews:
        result, effect, record = before.review(review)
        assert result == "applied" and effect is not None
        outputs += review_outputs(effect, record, review, now=NOW, event_time=NOW)
    hide = review_decision_id(allowed.decision_id, "confirm")
    restore_hide = ReviewData(decision_id=hide, outcome="restore")  # a review of a review
    _, effect, record = before.review(restore_hide)
    assert effect is not None and effect.decision is not None
    outputs += review_outputs(effect, record, restore_hide, now=NOW, event_time=NOW)

    after = Decider(DEADLINE)
    _replay(after, outputs)
    for review in (*reviews, restore_hide):
        assert after.review(review)[0] == "duplicate", review
    assert after.decided["post:p-9"] == effect.decision.decision_id  # the latest, as live
    assert after.review(ReviewData(decision_id=decision.decision_id,
                                   outcome="confirm"))[0] == "applied"  # never sent before


def test_review_of_an_unknown_decision_is_reported_not_applied() -> None:
    decider = Decider(DEADLINE)
    result, effect, _ = decider.review(ReviewData(decision_id="dec-unknown", outcome="restore"))
    assert (result, effect) == ("unknown_decision", None)


# ------------------------------------------------------------------------------- outputs


def test_decision_outputs_have_deterministic_ids_and_shadow_signals() -> None:
    decider = Decider(DEADLINE)
    entry, decision = _blocked(decider)
    outputs = decision_outputs(decision, entry.target(), now=NOW, event_time=entry.event_time())
    assert [o.spec.name for o in outputs] == [VERDICTS.name, TAKEDOWNS.name, ALERTS.name]
    assert [o.event_id for o in outputs] == [
        f"vrd-{decision.decision_id}", f"tkd-{decision.decision_id}",
        f"alr-{decision.decision_id}-hash_match"]

    decider = Decider(DEADLINE)
    entry = decider.add(signal("intake"), now=0.0)
    decider.add(signal("sha256"), now=0.0)
    decider.add(signal("md5"), now=0.0)
    decider.add(signal("pdq", distance=40, evidence={"bank": "b"}), now=0.0)
    assert entry is not None
    allowed = decider.try_decide(entry, now=0.0)
    assert allowed is not None and allowed.verdict == "allow"
    outputs = decision_outputs(allowed, entry.target(), now=NOW, event_time=None)
    shadow = [o.data for o in outputs if o.spec is SIGNALS]
    assert len(shadow) == 1 and isinstance(shadow[0], SignalData)
    assert shadow[0].detector == "shadow:pdq_near_match"
    assert shadow[0].evidence["would_action"] == "hold_for_review"
    assert shadow[0].detector_version == POLICY.version


def test_memory_bounds_what_is_kept_after_decisions() -> None:
    """`VIGIL_DECIDE_MEMORY`: the newest `memory` decided contents and half as many decision
    records are kept, whatever the number of decisions; a forgotten content is decided again."""
    decider = Decider(DEADLINE, memory=4)
    for n in range(10):
        entry = decider.add(signal("intake", content_type="post", content_id=f"p{n}"), now=n)
        assert entry is not None
        assert decider.try_decide(entry, now=n) is not None  # posts require nothing here
    assert list(decider.decided) == [f"post:p{n}" for n in range(6, 10)]
    assert len(decider.records) == 2
    assert decider.add(signal("intake", content_type="post", content_id="p9"), now=11) is None
    assert decider.add(signal("intake", content_type="post", content_id="p0"), now=11) is not None

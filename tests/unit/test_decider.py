"""agents.decide.Decider: the join state of the decide agent, driven with explicit `now`."""

from __future__ import annotations

from agents.decide import Decider, Pending

from .factories import match_signal, signal

DEADLINE = 5.0


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

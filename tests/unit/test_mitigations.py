"""Time-boxed mitigations: the `[[mitigations]]` policy block, `MitigationBook` (start, rebuild,
lift, expiry) and what a mitigation does to the decider's decisions; confirm on allowed content."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import pytest

from agents.decide import Decider, mitigation_output, review_outputs
from agents.decide.mitigations import MitigationBook
from agents.policy import PolicyError, load_default_policy, parse_policy, review_decision_id
from streams.events import AlertData, ReviewData, Target, VerdictData

from .factories import signal

MITIGATION = """
[[mitigations]]
name = "raid"
on = ["thread_raid"]
action = "restrict_thread"
duration_minutes = 30
young_account_days = 7
"""
POLICY = dataclasses.replace(
    parse_policy('version = "m-1"\n' + MITIGATION + """
[[mitigations]]
name = "swarm"
on = "new_account_swarm"
action = "hold_new_accounts_media"
duration_minutes = 60
mode = "shadow"
"""))
START = datetime(2026, 11, 25, 15, 0, tzinfo=timezone.utc)
EVENT_TIME = "2026-11-25T15:05:00+00:00"


def burst(kind: str, key: str, *, thread: str | None = None, board: str | None = None,
          resolved: bool = False) -> AlertData:
    return AlertData(
        alert_id=f"alr-{key}", kind=kind, severity="high", summary="raid",
        target=Target(type="thread", id=thread, thread_id=thread) if thread else None,
        evidence={"board": board, **({"resolved": True} if resolved else {})}, dedup_key=key)


def intake(content_id: str, thread: str, created: str | None, content_type: str = "post",
           board: str | None = None, staff: bool = False) -> object:
    return signal("intake", content_id=content_id, content_type=content_type,
                  thread_id=thread, post_id=content_id,
                  evidence={"event_time": EVENT_TIME, "author_created_at": created,
                            "author_is_staff": staff, "board": board})


def decide(decider: Decider, sig: object, at: datetime) -> object:
    entry = decider.add(sig, now=0.0)  # type: ignore[arg-type]
    assert entry is not None
    decision = decider.try_decide(entry, now=0.0, at=at)
    assert decision is not None
    return decision


# ------------------------------------------------------------------------------- policy file


@pytest.mark.parametrize(("edit", "line", "key", "words"), [
    (('action = "restrict_thread"', 'action = "lock_forum"'), 6, "mitigations[0].action",
     "'lock_forum' is not one of"),
    (("duration_minutes = 30\n", ""), 3, "mitigations[0]", "`duration_minutes`"),
    (("duration_minutes = 30", "duration_minutes = -1"), 7,
     "mitigations[0].duration_minutes", "out of range"),
    (('on = ["thread_raid"]', 'on = ["mitigation"]'), 5, "mitigations[0].on",
     "cannot start on a mitigation"),
    (("young_account_days = 7", "young_days = 7"), 8, "mitigations[0].young_days",
     "unknown key"),
])
def test_mitigation_errors_name_the_line_and_key(edit: tuple[str, str], line: int, key: str,
                                                 words: str) -> None:
    text = 'version = "m-1"\n' + MITIGATION
    old, new = edit
    assert old in text
    with pytest.raises(PolicyError) as info:
        parse_policy(text.replace(old, new, 1), source="p.toml")
    assert (info.value.line, info.value.key) == (line, key)
    assert words in info.value.reason


def test_default_policy_ships_its_mitigations_in_shadow_mode() -> None:
    mitigations = load_default_policy().mitigations
    assert {m.action for m in mitigations} == {"restrict_thread", "hold_new_accounts_media"}
    assert {m.mode for m in mitigations} == {"shadow"}


# ------------------------------------------------------------------------------- the book


def test_a_trigger_starts_one_mitigation_per_incident_and_its_ids_are_deterministic() -> None:
    book = MitigationBook(lambda: POLICY)
    [entry] = book.on_trigger(burst("thread_raid", "thread_raid:t-1:x", thread="t-1"), START)
    assert entry.dedup_key == "mitigation:restrict_thread:t-1:20261125T150000Z"
    assert entry.expires_at == START + timedelta(minutes=30)
    # an update of the same incident, or a replay after a restart: nothing new, same ids
    assert book.on_trigger(burst("thread_raid", "thread_raid:t-1:x", thread="t-1"),
                           START + timedelta(minutes=1)) == []
    again = MitigationBook(lambda: POLICY)
    [replayed] = again.on_trigger(burst("thread_raid", "thread_raid:t-1:x", thread="t-1"), START)
    assert replayed.decision_id == entry.decision_id
    # the end of the raid does not start anything; an alert naming no thread neither
    assert book.on_trigger(burst("thread_raid", "thread_raid:t-2:x", thread="t-2",
                                 resolved=True), START) == []
    assert book.on_trigger(burst("thread_raid", "thread_raid:none:x"), START) == []


def test_announcements_rebuild_lifts_and_expiry_lifts_by_wall_clock() -> None:
    book = MitigationBook(lambda: POLICY)
    [entry] = book.on_trigger(burst("thread_raid", "tr:t-1", thread="t-1"), START)
    assert book.covering("post", "t-1", None, START + timedelta(minutes=29)) == [entry]
    lifted = dataclasses.replace(entry, lifted_by="mod-1", resolved_at=START)
    resolved = mitigation_output(lifted).data
    assert isinstance(resolved, AlertData)
    # a process that read only the announcements (the trigger is gone) still knows it
    rebuilt = MitigationBook(lambda: POLICY)
    rebuilt.on_announcement(mitigation_output(entry).data)  # type: ignore[arg-type]
    assert rebuilt.by_decision(entry.decision_id) is not None
    rebuilt.on_announcement(resolved)
    assert rebuilt.covering("post", "t-1", None, START) == []
    # expiry: nothing covers after `duration_minutes`, and the entry says so
    book.expire(START + timedelta(minutes=29))
    assert entry.lifted_by is None
    book.expire(START + timedelta(minutes=30))
    assert entry.lifted_by == "expiry" and entry.resolved_at == entry.expires_at
    out = mitigation_output(entry).data
    assert isinstance(out, AlertData)
    assert out.evidence["resolved"] is True and out.evidence["lifted_by"] == "expiry"
    assert out.dedup_key == entry.dedup_key


def test_one_worker_announces_each_start_and_lift_the_others_apply_it() -> None:
    """Every decide worker used to announce every mitigation (same ids, sent N times); now
    only the worker `announces(scope)` names does, and the others learn it back."""
    owner, other = MitigationBook(lambda: POLICY), MitigationBook(lambda: POLICY)
    for book in (owner, other):
        book.on_trigger(burst("thread_raid", "tr:t-1", thread="t-1"), START)
    mine, never = (lambda scope: scope == "t-1"), (lambda scope: False)
    at = START + timedelta(minutes=1)
    assert other.to_announce(at, never) == []
    [entry] = owner.to_announce(at, mine)
    assert owner.to_announce(at, mine) == []  # once
    other.on_announcement(mitigation_output(entry).data)  # type: ignore[arg-type]
    assert other.covering("post", "t-1", None, at) != []
    # expiry: the owner resolves it once; a worker that took the scope over later (its
    # owner gone) resolves it if the owner's lift never reached the topic
    expired = START + timedelta(minutes=30)
    for book in (owner, other):
        book.expire(expired)
    assert other.to_announce(expired, never) == []
    assert [e.lifted_by for e in owner.to_announce(expired, mine)] == ["expiry"]
    assert owner.to_announce(expired, mine) == []
    assert [e.dedup_key for e in other.to_announce(expired, mine)] == [entry.dedup_key]
    # a mitigation that expired before anyone announced it is never announced
    late = MitigationBook(lambda: POLICY)
    late.on_trigger(burst("thread_raid", "tr:t-2", thread="t-2"), START)
    late.expire(expired)
    assert late.to_announce(expired, lambda scope: True) == []
    # shadow mitigations are never announced
    shadow = MitigationBook(lambda: POLICY)
    shadow.on_trigger(burst("new_account_swarm", "nas:b-1", board="b-1"), START)
    assert len(shadow) == 1 and shadow.to_announce(at, lambda scope: True) == []


# ------------------------------------------------------------------------------- decisions


def test_young_accounts_are_held_in_a_restricted_thread_only() -> None:
    book = MitigationBook(lambda: POLICY)
    book.on_trigger(burst("thread_raid", "tr:t-1", thread="t-1"), START)
    decider = Decider(5.0, POLICY, book)
    at = START + timedelta(minutes=5)
    young = decide(decider, intake("p-1", "t-1", "2026-11-24T00:00:00+00:00"), at)
    assert (young.verdict, young.action) == ("hold", "hold_for_review")  # type: ignore[attr-defined]
    assert [r.detector for r in young.reasons] == ["mitigation"]  # type: ignore[attr-defined]
    for decision in (
        decide(decider, intake("p-2", "t-1", "2020-01-01T00:00:00+00:00"), at),  # old
        decide(decider, intake("p-3", "t-1", None, staff=True), at),  # staff
        decide(decider, intake("p-4", "t-2", "2026-11-24T00:00:00+00:00"), at),  # elsewhere
        decide(decider, intake("p-5", "t-1", None), START + timedelta(minutes=31)),  # expired
    ):
        assert decision.verdict == "allow"  # type: ignore[attr-defined]
    unknown_age = decide(decider, intake("p-6", "t-1", None), at)
    assert unknown_age.verdict == "hold"  # type: ignore[attr-defined]


def test_a_shadow_mitigation_reports_images_it_would_hold_on_the_board() -> None:
    book = MitigationBook(lambda: POLICY)
    [entry] = book.on_trigger(burst("new_account_swarm", "sw:b", board="b-1"), START)
    assert entry.announced is False and entry.mitigation.mode == "shadow"
    decider = Decider(5.0, POLICY, book)
    at = START + timedelta(minutes=5)
    # the image carries no board: decide learnt t-9's board from a post of that thread
    decide(decider, intake("p-9", "t-9", None, board="b-1"), at)
    image = decide(decider, intake("i-9", "t-9", None, content_type="image"), at)
    assert image.verdict == "allow"  # type: ignore[attr-defined]
    [shadow] = image.shadow  # type: ignore[attr-defined]
    assert (shadow.rule, shadow.would_action) == ("swarm", "hold_for_review")


def test_confirm_on_an_allowed_post_hides_it_once() -> None:
    decider = Decider(5.0, POLICY)
    allowed = decide(decider, intake("p-1", "t-1", None), START)
    review = ReviewData(decision_id=allowed.decision_id, outcome="confirm",  # type: ignore[attr-defined]
                        reviewer="mod-1", content_id="p-1")
    result, effect, record = decider.review(review)
    assert result == "applied" and effect is not None and effect.decision is not None
    hide = effect.decision
    assert (hide.action, hide.verdict) == ("hide", "hold")
    assert hide.decision_id == review_decision_id(allowed.decision_id, "confirm")  # type: ignore[attr-defined]
    outputs = review_outputs(effect, record, review, now=START, event_time=None)
    assert {o.event_id for o in outputs} == {f"vrd-{hide.decision_id}", f"tkd-{hide.decision_id}"}
    assert decider.review(review)[0] == "duplicate"


def test_reviews_apply_to_decisions_read_back_after_a_restart() -> None:
    decider = Decider(5.0, POLICY)  # a fresh process: nothing in memory
    decider.remember_verdict(VerdictData(content_type="post", content_id="p-1", verdict="allow",
                                         decision_id="dec-a", post_id="p-1", thread_id="t-1"))
    result, effect, _ = decider.review(ReviewData(decision_id="dec-a", outcome="confirm",
                                                  content_id="p-1"))
    assert result == "applied" and effect is not None and effect.decision is not None
    assert effect.decision.action == "hide"

"""The rules engine: pure code from a content's signals (or a review) to a decision.

No Kafka, no clock, no `await`: everything arrives as arguments, including the content's event
time (for staffed hours), so tests call it directly and a replay gives the same decisions. The
result is data (osprey's *effects*): the decide agent turns it into events.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from agents.policy.model import (
    ACTIONS,
    VERDICT_OF,
    Policy,
    Rule,
    most_severe,
    strongest,
)
from streams.events import Reason, ReviewData, SignalData

BOOKKEEPING = ("intake",)
SHADOW_PREFIX = "shadow:"


@dataclass(frozen=True)
class AlertSpec:
    """An alert the decision raises (the agent turns it into a `safety.alert`)."""

    kind: str
    severity: str
    summary: str
    dedup_key: str
    evidence: dict[str, object] = field(default_factory=dict)
    resolved: bool = False


@dataclass(frozen=True)
class Hit:
    """One rule that fired on one signal."""

    rule: Rule
    signal: SignalData
    severity: str

    def reason(self) -> Reason:
        s = self.signal
        return Reason(
            detector=s.detector,
            signal="bank_match" if s.distance is not None and s.evidence.get("bank")
            else f"{self.rule.name}",
            score=s.score,
            distance=s.distance,
            bank=s.evidence.get("bank"),
            label=s.evidence.get("label"),
        )


@dataclass(frozen=True)
class ShadowEffect:
    """What a shadow rule would have done; emitted as a `shadow:<rule>` signal, never acted on."""

    rule: str
    would_action: str
    would_severity: str
    signal: SignalData

    @property
    def detector(self) -> str:
        return SHADOW_PREFIX + self.rule


@dataclass(frozen=True)
class Decision:
    """What to do with one content: verdict for the forum, optional takedown action, alerts."""

    decision_id: str
    verdict: str  # allow | hold | block
    action: str | None  # takedown action, None for allow
    severity: str
    reasons: tuple[Reason, ...]
    alerts: tuple[AlertSpec, ...] = ()
    policy_version: str = ""
    shadow: tuple[ShadowEffect, ...] = ()
    staffed: bool = True


def decision_id(content_type: str, content_id: str, verdict: str, policy_version: str) -> str:
    """Deterministic: the same content, verdict and policy always give the same id."""
    raw = f"{content_type}/{content_id}/{verdict}/{policy_version}".encode()
    return "dec-" + hashlib.sha256(raw).hexdigest()[:32]


def review_decision_id(original: str, outcome: str) -> str:
    """Id of the decision a review makes about an earlier one (same review → same id)."""
    return "dec-" + hashlib.sha256(f"{original}/{outcome}".encode()).hexdigest()[:32]


def _model_name(model: str | None) -> str:
    return (model or "").split("@", 1)[0]


def rule_hits(rule: Rule, signal: SignalData, content_type: str, staffed: bool) -> bool:
    """Whether `rule` fires on `signal` (thresholds of the staffed or unstaffed side)."""
    if signal.detector not in rule.detectors and "*" not in rule.detectors:
        return False
    if rule.content_types and content_type not in rule.content_types:
        return False
    if signal.status == "unchecked":
        return False  # handled by the fail-closed path, never by a threshold
    if rule.models and not (signal.model in rule.models or _model_name(signal.model)
                            in rule.models):
        return False
    if rule.banks and signal.evidence.get("bank") not in rule.banks:
        return False
    if rule.labels and signal.evidence.get("label") not in rule.labels:
        return False
    limits = rule.thresholds(staffed)
    if limits.min_score is None and limits.max_distance is None:
        return signal.status == "match"
    if limits.min_score is not None and (signal.score is None or signal.score < limits.min_score):
        return False
    return not (limits.max_distance is not None
                and (signal.distance is None or signal.distance > limits.max_distance))


def _severity(rule: Rule, signal: SignalData) -> str:
    if rule.severity != "bank":
        return rule.severity
    value = str(signal.evidence.get("severity", "high"))
    return value if value in ("critical", "high", "medium", "low") else "high"


def evaluate(policy: Policy, content_type: str, signals: Mapping[str, SignalData],
             staffed: bool) -> tuple[list[Hit], list[Hit]]:
    """(enforced hits, shadow hits) of every rule on every detector signal."""
    enforced: list[Hit] = []
    shadow: list[Hit] = []
    for name in sorted(signals):
        signal = signals[name]
        if name in BOOKKEEPING or name.startswith(SHADOW_PREFIX):
            continue
        for rule in policy.rules_for(signal.detector):
            if rule_hits(rule, signal, content_type, staffed):
                hit = Hit(rule, signal, _severity(rule, signal))
                (shadow if rule.mode == "shadow" else enforced).append(hit)
    return enforced, shadow


def decide_content(
    policy: Policy,
    content_type: str,
    content_id: str,
    signals: Mapping[str, SignalData],
    *,
    deadline_passed: bool,
    at: datetime | None = None,
) -> Decision | None:
    """Decide from the signals received so far, or return None to keep waiting.

    `at` is the content's event time (staffed hours). A `block` hit decides at once (nothing
    can make it stronger); anything else waits for the required detectors. Past the deadline,
    a missing required detector or an `unchecked` signal holds: fail closed.
    """
    staffed = policy.staffed_hours.covers(at)
    enforced, shadow_hits = evaluate(policy, content_type, signals, staffed)
    blocking = [h for h in enforced if h.rule.action == "block"]
    required = policy.required.get(content_type, ())
    missing = [name for name in required if name not in signals]
    if not blocking and missing and not deadline_passed:
        return None
    unchecked = [s for n, s in sorted(signals.items())
                 if s.status == "unchecked" and n not in BOOKKEEPING]
    fail_closed = tuple(
        Reason(detector=s.detector, signal=f"unchecked: {s.evidence.get('reason', '?')}")
        for s in unchecked
    ) + tuple(Reason(detector=name, signal="no answer before deadline") for name in missing)

    actions = [h.rule.action for h in enforced]
    severities = [h.severity for h in enforced]
    if fail_closed and not blocking:
        actions.append(policy.unchecked_action)
        severities.append(policy.unchecked_severity)
    shadow = tuple(ShadowEffect(h.rule.name, h.rule.action, h.severity, h.signal)
                   for h in shadow_hits)
    if not actions:
        verdict = "allow"
        return Decision(decision_id(content_type, content_id, verdict, policy.version), verdict,
                        None, "low", (), (), policy.version, shadow, staffed)
    action = strongest(*actions)
    verdict = VERDICT_OF[action]
    ordered = sorted(enforced, key=lambda h: (ACTIONS.index(h.rule.action), h.signal.detector,
                                              h.rule.name))
    reasons: list[Reason] = []
    for hit in ordered:
        reason = hit.reason()
        if reason not in reasons:
            reasons.append(reason)
    if not blocking:
        reasons.extend(fail_closed)
    acted = [h for h in enforced if not blocking or h.rule.action == "block"]
    severity = most_severe(*(
        [h.severity for h in acted] if blocking else severities))
    return Decision(
        decision_id=decision_id(content_type, content_id, verdict, policy.version),
        verdict=verdict,
        action=action,
        severity=severity,
        reasons=tuple(reasons),
        alerts=_alerts(content_type, content_id, acted),
        policy_version=policy.version,
        shadow=shadow,
        staffed=staffed,
    )


def _alerts(content_type: str, content_id: str, hits: list[Hit]) -> tuple[AlertSpec, ...]:
    by_kind: dict[str, list[Hit]] = {}
    for hit in hits:
        if hit.rule.alert:
            by_kind.setdefault(hit.rule.alert, []).append(hit)
    alerts = []
    for kind, kind_hits in sorted(by_kind.items()):
        severity = most_severe(*(h.severity for h in kind_hits),
                               *(h.rule.alert_min_severity for h in kind_hits))
        reasons = [h.reason() for h in sorted(kind_hits, key=lambda h: h.signal.detector)]
        first = reasons[0]
        if first.bank:
            summary = (f"Known image blocked: {content_type} {content_id} matched bank "
                       f"{first.bank!r} ({first.label or 'no label'})")
        else:
            score = f" score {first.score:.2f}" if first.score is not None else ""
            summary = (f"{kind}: {kind_hits[0].rule.action} {content_type} {content_id} "
                       f"({first.detector}{score})")
        alerts.append(AlertSpec(
            kind=kind,
            severity=severity,
            summary=summary,
            dedup_key=f"{kind}:{content_type}:{content_id}",
            evidence={"banks": sorted({r.bank for r in reasons if r.bank}),
                      "labels": sorted({r.label for r in reasons if r.label}),
                      "detectors": sorted({r.detector for r in reasons}),
                      "rules": sorted({h.rule.name for h in kind_hits})},
        ))
    return tuple(alerts)


# ------------------------------------------------------------------------------------ reviews


@dataclass(frozen=True)
class ReviewEffect:
    """What a moderator's review changes: a restore decision, alerts to raise or resolve."""

    outcome: str
    decision: Decision | None = None  # restore: verdict allow + takedown `restore`
    alerts: tuple[AlertSpec, ...] = ()
    final: bool = False


def review_effect(policy: Policy, review: ReviewData, *, content_type: str | None,
                  content_id: str | None, action: str | None,
                  alerts: tuple[AlertSpec, ...]) -> ReviewEffect:
    """The effect of `review` on the decision it names (`action`/`alerts`: what that did).

    confirm: the decision is final and its alerts are resolved (a human handled it); on a
    decision that took nothing down (`allow`), a new `hide` decision takes the content down —
    the console's "hide all posts of this raid" confirms each post's verdict;
    restore: a new `restore` decision undoes a takedown, and its alerts are resolved;
    escalate: a `review_escalated` alert that pages (see the policy's routes).
    """
    resolved = tuple(AlertSpec(a.kind, a.severity, a.summary, a.dedup_key,
                               {**a.evidence, "resolved_by": review.outcome}, resolved=True)
                     for a in alerts)
    who = review.reviewer or "a moderator"
    if review.outcome == "confirm":
        if action is None and content_type is not None and content_id is not None:
            reason = Reason(detector="review", signal=f"confirm by {who}")
            hide = Decision(
                decision_id=review_decision_id(review.decision_id, "confirm"),
                verdict=VERDICT_OF["hide"], action="hide", severity="medium",
                reasons=(reason,), policy_version=policy.version)
            return ReviewEffect("confirm", decision=hide, alerts=resolved, final=True)
        return ReviewEffect("confirm", alerts=resolved, final=True)
    if review.outcome == "restore":
        if action in (None, "restore") or content_type is None or content_id is None:
            return ReviewEffect("restore")  # nothing was taken down: nothing to undo
        reason = Reason(detector="review", signal=f"restore by {who}")
        decision = Decision(
            decision_id=review_decision_id(review.decision_id, "restore"),
            verdict="allow", action="restore", severity="low", reasons=(reason,),
            policy_version=policy.version)
        return ReviewEffect("restore", decision=decision, alerts=resolved, final=True)
    target = f"{content_type} {content_id}" if content_id else f"decision {review.decision_id}"
    note = f": {review.note[:200]}" if review.note else ""
    alert = AlertSpec(
        kind="review_escalated",
        severity=policy.escalate_severity,
        summary=f"Escalated by {who} for {target}{note}",
        dedup_key=f"review_escalated:{review.decision_id}",
        evidence={"decision_id": review.decision_id, "reviewer": review.reviewer,
                  "original_action": action},
    )
    return ReviewEffect("escalate", alerts=(alert,))

"""What decisions, reviews and mitigations emit, as events with deterministic ids (no I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from agents.decide.decider import Record
from agents.decide.mitigations import KIND, Active, rfc3339
from agents.policy import AlertSpec, Decision, ReviewEffect, review_decision_id
from streams.events import (
    AlertData,
    Data,
    ReviewData,
    SignalData,
    TakedownData,
    Target,
    VerdictData,
)
from streams.topics import ALERTS, SIGNALS, TAKEDOWNS, VERDICTS, TopicSpec


@dataclass(frozen=True)
class Output:
    """One event to send: topic, payload, deterministic event id, event time."""

    spec: TopicSpec
    data: Data
    event_id: str



def decision_outputs(decision: Decision, target: Target, *, now: datetime,
                     event_time: datetime | None, latency_ms: float | None = None,
                     alert_of: str | None = None) -> list[Output]:
    """The events a decision emits: verdict, takedown (non-allow), alerts, shadow signals.

    `alert_of` is the decision id that alert ids derive from (a review's alerts are about the
    decision it reviews).
    """
    outputs: list[Output] = []
    if target.type in ("post", "image"):
        outputs.append(Output(VERDICTS, VerdictData(
            content_type=target.type,  # type: ignore[arg-type]
            content_id=target.id,
            verdict=decision.verdict,  # type: ignore[arg-type]
            decision_id=decision.decision_id,
            post_id=target.post_id,
            thread_id=target.thread_id,
            reasons=list(decision.reasons),
            policy_version=decision.policy_version,
            latency_ms=round(latency_ms, 1) if latency_ms is not None else None,
        ), f"vrd-{decision.decision_id}"))
    if decision.action is not None:
        outputs.append(Output(TAKEDOWNS, TakedownData(
            decision_id=decision.decision_id,
            action=decision.action,  # type: ignore[arg-type]
            target=target,
            reasons=list(decision.reasons),
            severity=decision.severity,  # type: ignore[arg-type]
            policy_version=decision.policy_version,
            decided_at=now,
        ), f"tkd-{decision.decision_id}"))
    outputs.extend(alert_outputs(decision.alerts, target, alert_of or decision.decision_id,
                                 event_time=event_time or now))
    for effect in decision.shadow:
        s = effect.signal
        outputs.append(Output(SIGNALS, SignalData(
            detector=effect.detector,
            detector_version=decision.policy_version,
            content_type=target.type,  # type: ignore[arg-type]
            content_id=target.id,
            status="match",
            post_id=target.post_id,
            thread_id=target.thread_id,
            author_id=target.author_id,
            score=s.score,
            distance=s.distance,
            model=s.model,
            evidence={"rule": effect.rule, "would_action": effect.would_action,
                      "would_severity": effect.would_severity, "detector": s.detector,
                      "actual_verdict": decision.verdict, "decision_id": decision.decision_id},
        ), f"sig-{effect.detector}-{target.type}-{target.id}-{decision.policy_version}"))
    return outputs


def alert_outputs(alerts: tuple[AlertSpec, ...], target: Target | None, about: str, *,
                  event_time: datetime, decision_id: str | None = None) -> list[Output]:
    """Alert events; a resolved spec keeps the dedup key and marks `evidence.resolved`.

    `about` names the alert ids; `evidence.decision_id` is `decision_id` (the decision the
    alert is about, e.g. the reviewed one for an escalation), else `about`.
    """
    outputs = []
    for spec in alerts:
        suffix = "-resolved" if spec.resolved else ""
        evidence: dict[str, Any] = {**spec.evidence, "decision_id": decision_id or about}
        if spec.resolved:
            evidence["resolved"] = True
        alert = AlertData(
            alert_id=f"alr-{about}-{spec.kind}{suffix}",
            kind=spec.kind,
            severity=spec.severity,  # type: ignore[arg-type]
            summary=spec.summary,
            target=target,
            evidence=evidence,
            first_seen=event_time,
            last_seen=event_time,
            count=1,
            dedup_key=spec.dedup_key,
            runbook_url=f"docs/runbook.md#{spec.kind}",
        )
        outputs.append(Output(ALERTS, alert, alert.alert_id))
    return outputs


def review_outputs(effect: ReviewEffect, record: Record | None, review: ReviewData, *,
                   now: datetime, event_time: datetime | None) -> list[Output]:
    """The events a review emits (restore decision, resolved or escalation alerts)."""
    target = record.target if record else None
    outputs: list[Output] = []
    if effect.decision is not None and target is not None:
        outputs.extend(decision_outputs(effect.decision, target, now=now,
                                        event_time=event_time,
                                        alert_of=review.decision_id))
    about = (review.decision_id if effect.outcome != "escalate"
             else review_decision_id(review.decision_id, "escalate"))
    outputs.extend(alert_outputs(effect.alerts, target, about, event_time=event_time or now,
                                 decision_id=review.decision_id))
    return outputs


def mitigation_output(entry: Active) -> Output:
    """The `mitigation` alert announcing `entry`, or (once lifted) resolving it.

    Every field derives from the entry, so two decide workers, or one before and after a
    restart, announce the same event (same `alert_id`, same CloudEvent `id`).
    """
    m = entry.mitigation
    resolved = entry.lifted_by is not None
    evidence: dict[str, Any] = {
        "mitigation": m.action, "decision_id": entry.decision_id, "scope": m.scope,
        "expires_at": rfc3339(entry.expires_at), "trigger": entry.trigger,
        "resolved": resolved, "rule": m.name, "young_account_days": m.young_account_days,
    }
    if resolved:
        evidence["resolved_at"] = rfc3339(entry.resolved_at or entry.expires_at)
        evidence["lifted_by"] = entry.lifted_by
    what = (f"{m.scope} {entry.scope_id}: posts of accounts younger than "
            f"{m.young_account_days:g} days held for review" if m.action == "restrict_thread"
            else f"board {entry.scope_id}: images of accounts younger than "
                 f"{m.young_account_days:g} days held for review")
    summary = (f"Mitigation {m.action} lifted ({entry.lifted_by}): {what}" if resolved
               else f"Mitigation {m.action} until {rfc3339(entry.expires_at)}: {what}")
    alert = AlertData(
        alert_id=f"alr-{entry.decision_id}-{KIND}{'-resolved' if resolved else ''}",
        kind=KIND,
        severity=m.severity,  # type: ignore[arg-type]
        summary=summary,
        target=Target(type=m.scope, id=entry.scope_id,  # type: ignore[arg-type]
                      thread_id=entry.scope_id if m.scope == "thread" else None),
        evidence=evidence,
        first_seen=entry.started,
        last_seen=entry.resolved_at if resolved else entry.started,
        count=1,
        dedup_key=entry.dedup_key,
        runbook_url=f"docs/runbook.md#{KIND}",
    )
    return Output(ALERTS, alert, alert.alert_id)

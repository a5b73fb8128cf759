"""Decide agent: joins each content's signals, applies the policy, emits verdicts, takedowns,
alerts and shadow signals; applies moderators' reviews.

Signals are keyed by content id, so every signal of one content arrives on one partition and one
worker. The agent keeps a small pending entry per content until the policy can decide (all
required signals in, or a `block` hit) or the deadline passes (then a missing detector means
`hold`: fail closed). Decisions are idempotent: ids are derived from the content, verdict and
policy version, output event ids from the decision id, and decided contents are remembered
(bounded) so a redelivered or resent content never emits a second action.

Reviews (`safety.reviews.v1`) name a decision: `restore` emits a `restore` takedown and an
`allow` verdict under a new deterministic decision id, `confirm` makes the decision final, both
resolve its alerts; `escalate` raises a `review_escalated` alert that pages.

State lives in memory (bounded): after a restart, redelivered signals give the very same
decisions and event ids (consumers dedup by `id`), but a review of a decision taken before the
restart is not applied (its target is unknown; counted in `vigil_reviews_total{result=
"unknown_decision"}`). A changelogged table is the next step (docs/policy.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from agents.context import AgentContext, Outbox, decode_events
from agents.policy import (
    SHADOW_PREFIX,
    AlertSpec,
    Decision,
    Policy,
    PolicyStore,
    ReviewEffect,
    decide_content,
    load_default_policy,
    review_decision_id,
    review_effect,
)
from streams.codec import encode
from streams.events import (
    AlertData,
    Data,
    ReviewData,
    SignalData,
    TakedownData,
    Target,
    VerdictData,
)
from streams.topics import ALERTS, REVIEWS, SIGNALS, TAKEDOWNS, VERDICTS, TopicSpec

NAME = "decide"
SOURCE = "vigil/decide"
_DECIDED_MEMORY = 200_000  # contents remembered after their decision (≈ 20 MB)
_RECORD_MEMORY = 100_000  # takedown decisions remembered for reviews
log = logging.getLogger(__name__)


@dataclass
class Pending:
    """Signals received so far for one content, and when its window opened (monotonic s)."""

    content_type: str
    content_id: str
    opened: float
    signals: dict[str, SignalData] = field(default_factory=dict)
    #: Input messages kept unacknowledged until this content is decided and its outputs are
    #: delivered, so a crash before that redelivers them instead of losing the window.
    held: list[Any] = field(default_factory=list)

    def context(self) -> SignalData | None:
        """The signal with the most context (intake's, else any)."""
        return self.signals.get("intake") or next(iter(self.signals.values()), None)

    def event_time(self) -> datetime | None:
        """The content's event time on the forum (from intake), for staffed hours."""
        intake = self.signals.get("intake")
        value = intake.evidence.get("event_time") if intake is not None else None
        try:
            return datetime.fromisoformat(value) if isinstance(value, str) else None
        except ValueError:
            return None

    def target(self) -> Target:
        base = self.context()
        return Target(
            type=self.content_type,  # type: ignore[arg-type]
            id=self.content_id,
            post_id=base.post_id if base else None,
            thread_id=base.thread_id if base else None,
            author_id=base.author_id if base else None,
        )


@dataclass
class Record:
    """A takedown decision, kept so a review can undo or confirm it."""

    decision: Decision
    target: Target
    event_time: datetime | None
    final: bool = False


@dataclass(frozen=True)
class Output:
    """One event to send: topic, payload, deterministic event id, event time."""

    spec: TopicSpec
    data: Data
    event_id: str


class Decider:
    """The join state and the steps that turn it into decisions (no I/O: tested directly).

    `policy` is the policy in force, or a callable returning it (hot reload).
    """

    def __init__(self, deadline_s: float,
                 policy: Policy | Callable[[], Policy] | None = None) -> None:
        self.deadline_s = deadline_s
        if policy is None:
            policy = load_default_policy()
        self.policy: Callable[[], Policy] = policy if callable(policy) else (lambda: policy)
        self.pending: dict[str, Pending] = {}
        self.decided: OrderedDict[str, str] = OrderedDict()
        self.records: OrderedDict[str, Record] = OrderedDict()
        self.reviewed: OrderedDict[str, str] = OrderedDict()

    def add(self, signal: SignalData, now: float) -> Pending | None:
        """Record a signal; return its pending entry (None if already decided, or our own
        shadow signal)."""
        if signal.detector.startswith(SHADOW_PREFIX):
            return None
        key = f"{signal.content_type}:{signal.content_id}"
        if key in self.decided:
            if not (signal.status == "match" and signal.evidence.get("retroactive") is True):
                return None
            # Retroactive hash match (a bank gained a hash of content decided earlier, see
            # docs/hashing.md): decide again on this signal alone, at once — no intake signal
            # will come again; a block hit decides without the other detectors.
            del self.decided[key]
            self.pending[key] = Pending(signal.content_type, signal.content_id,
                                        now - self.deadline_s)
        entry = self.pending.get(key)
        if entry is None:
            entry = self.pending[key] = Pending(signal.content_type, signal.content_id, now)
        entry.signals[signal.detector] = signal
        return entry

    def try_decide(self, entry: Pending, now: float, at: datetime | None = None
                   ) -> Decision | None:
        """Decide `entry` if the policy can; the entry then leaves the pending set.

        `at` is used for staffed hours only when the content carries no event time.
        """
        if entry.signals.get("intake") is None and now - entry.opened < self.deadline_s:
            return None  # wait for intake's context (post/thread ids) unless it is overdue
        event_time = entry.event_time() or at
        decision = decide_content(
            self.policy(),
            entry.content_type,
            entry.content_id,
            entry.signals,
            deadline_passed=now - entry.opened >= self.deadline_s,
            at=event_time,
        )
        if decision is not None:
            key = f"{entry.content_type}:{entry.content_id}"
            self.pending.pop(key, None)
            _remember(self.decided, key, decision.decision_id, _DECIDED_MEMORY)
            if decision.action is not None:
                _remember(self.records, decision.decision_id,
                          Record(decision, entry.target(), event_time), _RECORD_MEMORY)
        return decision

    def overdue(self, now: float) -> list[Pending]:
        """Entries whose deadline has passed."""
        return [e for e in self.pending.values() if now - e.opened >= self.deadline_s]

    def review(self, review: ReviewData) -> tuple[str, ReviewEffect | None, Record | None]:
        """Apply a review once: (result for metrics, effect or None, the reviewed record)."""
        key = f"{review.decision_id}/{review.outcome}"
        if key in self.reviewed:
            return "duplicate", None, None
        record = self.records.get(review.decision_id)
        if record is None and review.outcome != "escalate":
            return "unknown_decision", None, None
        _remember(self.reviewed, key, review.outcome, _RECORD_MEMORY)
        decision = record.decision if record else None
        effect = review_effect(
            self.policy(), review,
            content_type=record.target.type if record else None,
            content_id=record.target.id if record else review.content_id,
            action=decision.action if decision else None,
            alerts=decision.alerts if decision else (),
        )
        if record is not None and effect.final:
            record.final = True
        if effect.decision is not None:
            self.decided[f"{record.target.type}:{record.target.id}"] = (  # type: ignore[union-attr]
                effect.decision.decision_id)
        return "applied", effect, record


def _remember(table: OrderedDict[str, Any], key: str, value: Any, limit: int) -> None:
    table[key] = value
    table.move_to_end(key)
    while len(table) > limit:
        table.popitem(last=False)


# ------------------------------------------------------------------------------------ outputs


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


# ------------------------------------------------------------------------------------ agent


def register(ctx: AgentContext) -> None:
    """Register the decide agents (signals, reviews) and the deadline/reload timers."""
    metrics = ctx.metrics
    policy_path: Path | None = getattr(ctx.settings, "policy", None)
    reload_seconds = float(getattr(ctx.settings, "policy_reload_seconds", 2.0))

    def on_reload(outcome: str, value: Any) -> None:
        metrics.policy_reloads.labels(outcome).inc()
        if isinstance(value, Policy):
            metrics.policy_version.clear()
            metrics.policy_version.labels(value.version).set(1)

    store = PolicyStore(policy_path, on_reload=on_reload)
    on_reload("ok", store.policy)
    decider = Decider(ctx.settings.decide_deadline_ms / 1000, store)
    batch_seconds = metrics.agent_batch_seconds.labels(NAME)

    def add_all(out: Outbox, outputs: list[Output], now: datetime) -> None:
        for o in outputs:
            signed = ctx.signer if o.spec.signed else None
            out.add(o.spec, *encode(o.spec, o.data, source=SOURCE, event_id=o.event_id,
                                    time=now, signer=signed))
            if isinstance(o.data, AlertData):
                metrics.alerts.labels(o.data.kind, o.data.severity).inc()
            elif isinstance(o.data, TakedownData):
                metrics.takedowns.labels(o.data.action, o.data.severity).inc()
            elif isinstance(o.data, SignalData):
                metrics.shadow_hits.labels(o.data.evidence.get("rule", "?"),
                                           o.data.evidence.get("would_action", "?")).inc()

    def emit(out: Outbox, entry: Pending, decision: Decision, now: datetime) -> None:
        base = entry.signals.get("intake") or entry.context()
        received_ms = base.evidence.get("received_ms") if base else None
        latency_ms = time.time() * 1000 - received_ms if received_ms else None
        add_all(out, decision_outputs(decision, entry.target(), now=now,
                                      event_time=entry.event_time(), latency_ms=latency_ms),
                now)
        metrics.verdicts.labels(entry.content_type, decision.verdict).inc()
        event_time = entry.event_time()
        if event_time is not None:
            metrics.event_to_verdict.labels(entry.content_type).observe(
                max(0.0, (now - event_time).total_seconds()))
        if latency_ms is not None:
            metrics.verdict_latency.labels(entry.content_type).observe(latency_ms / 1000)
            if decision.verdict != "allow":
                # by hour of the content's event time: night vs day time-to-takedown
                hour = f"{(entry.event_time() or now).astimezone(timezone.utc).hour:02d}"
                metrics.takedown_latency.labels(hour).observe(latency_ms / 1000)

    def release(entries: list[Pending]) -> None:
        """Ack the inputs held for decided contents (their outputs are delivered by now)."""
        for entry in entries:
            for message in entry.held:
                message.ack(ctx.app.consumer)
            entry.held.clear()

    async def decide_verdicts(stream: Any) -> None:
        # One outbox per batch: its outputs are delivered before take_events acks the batch's
        # signals (at-least-once), in a few produce requests instead of one per output.
        async for events in stream.take_events(ctx.settings.batch_size, ctx.settings.batch_within):
            with batch_seconds.time():
                decided: list[Pending] = []
                async with ctx.outbox() as out:
                    now = time.monotonic()
                    wall = datetime.now(timezone.utc)
                    touched: dict[int, Pending] = {}
                    for raw, signal, _ in decode_events(SIGNALS, events):
                        if signal is None:
                            continue
                        entry = decider.add(signal.data, now)
                        if entry is not None:
                            touched[id(entry)] = entry
                            raw.message.incref()  # take_events acks the batch; we hold it
                            entry.held.append(raw.message)
                    for entry in touched.values():
                        decision = decider.try_decide(entry, now, wall)
                        if decision is not None:
                            emit(out, entry, decision, wall)
                            decided.append(entry)
                    metrics.decide_pending.set(len(decider.pending))
                release(decided)  # after the outbox delivered their outputs

    ctx.app.agent(ctx.topic(SIGNALS), name="vigil.decide.decide_verdicts")(decide_verdicts)

    async def apply_reviews(stream: Any) -> None:
        async for events in stream.take_events(ctx.settings.batch_size, ctx.settings.batch_within):
            async with ctx.outbox() as out:
                for _, event, _ in decode_events(REVIEWS, events):
                    if event is None:
                        continue  # intake dead-letters it
                    review: ReviewData = event.data
                    result, effect, record = decider.review(review)
                    metrics.reviews.labels(review.outcome, result).inc()
                    if effect is None:
                        if result == "unknown_decision":
                            log.warning("review %s of unknown decision %s ignored (decided "
                                        "before a restart, or by another worker)",
                                        review.outcome, review.decision_id)
                        continue
                    now = datetime.now(timezone.utc)
                    add_all(out, review_outputs(effect, record, review, now=now,
                                                event_time=event.time), now)

    ctx.app.agent(ctx.topic(REVIEWS), name="vigil.decide.apply_reviews")(apply_reviews)

    async def decide_overdue() -> None:
        decided: list[Pending] = []
        async with ctx.outbox() as out:
            now = time.monotonic()
            wall = datetime.now(timezone.utc)
            for entry in decider.overdue(now):
                decision = decider.try_decide(entry, now, wall)
                if decision is not None:
                    emit(out, entry, decision, wall)
                    decided.append(entry)
            metrics.decide_pending.set(len(decider.pending))
        release(decided)

    ctx.app.timer(0.25, name="vigil.decide.decide_overdue")(decide_overdue)

    if policy_path is not None:
        async def reload_policy() -> None:
            await asyncio.to_thread(store.reload_if_changed)

        ctx.app.timer(reload_seconds, name="vigil.decide.reload_policy")(reload_policy)

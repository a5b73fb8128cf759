"""Decide agent: joins each content's signals, applies the policy, emits verdicts, takedowns and
alerts.

Signals are keyed by content id, so every signal of one content arrives on one partition and one
worker. The agent keeps a small pending entry per content until the policy can decide (all
required signals in, or a decisive one such as a bank match) or the deadline passes (then a
missing detector means `hold`: fail closed). Decisions are idempotent: ids are derived from the
content and verdict, output event ids from the decision id, and decided contents are remembered
(bounded) so a redelivered signal never emits a second action.

Pending entries live in memory in this skeleton: a crash loses the open windows of the last few
seconds, whose inputs are then redelivered from their uncommitted offsets only if faust had not
committed them yet. The decide issue moves them to a changelogged table.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from agents.context import AgentContext, decode_events
from agents.policy import Decision, decide_content
from streams.codec import encode
from streams.events import AlertData, SignalData, TakedownData, Target, VerdictData
from streams.topics import ALERTS, SIGNALS, TAKEDOWNS, VERDICTS

NAME = "decide"
_DECIDED_MEMORY = 200_000  # contents remembered after their decision (≈ 20 MB)


@dataclass
class Pending:
    """Signals received so far for one content, and when its window opened (monotonic s)."""

    content_type: str
    content_id: str
    opened: float
    signals: dict[str, SignalData] = field(default_factory=dict)

    def context(self) -> SignalData | None:
        """The signal with the most context (intake's, else any)."""
        return self.signals.get("intake") or next(iter(self.signals.values()), None)


class Decider:
    """The join state and the step that turns it into decisions (no I/O: tested directly)."""

    def __init__(self, deadline_s: float) -> None:
        self.deadline_s = deadline_s
        self.pending: dict[str, Pending] = {}
        self.decided: OrderedDict[str, str] = OrderedDict()

    def add(self, signal: SignalData, now: float) -> Pending | None:
        """Record a signal; return its pending entry (None if the content is already decided)."""
        key = f"{signal.content_type}:{signal.content_id}"
        if key in self.decided:
            return None
        entry = self.pending.get(key)
        if entry is None:
            entry = self.pending[key] = Pending(signal.content_type, signal.content_id, now)
        entry.signals[signal.detector] = signal
        return entry

    def try_decide(self, entry: Pending, now: float) -> Decision | None:
        """Decide `entry` if the policy can; the entry then leaves the pending set."""
        if entry.signals.get("intake") is None and now - entry.opened < self.deadline_s:
            return None  # wait for intake's context (post/thread ids) unless it is overdue
        decision = decide_content(
            entry.content_type,
            entry.content_id,
            entry.signals,
            deadline_passed=now - entry.opened >= self.deadline_s,
        )
        if decision is not None:
            key = f"{entry.content_type}:{entry.content_id}"
            self.pending.pop(key, None)
            self.decided[key] = decision.decision_id
            while len(self.decided) > _DECIDED_MEMORY:
                self.decided.popitem(last=False)
        return decision

    def overdue(self, now: float) -> list[Pending]:
        """Entries whose deadline has passed."""
        return [e for e in self.pending.values() if now - e.opened >= self.deadline_s]


def register(ctx: AgentContext) -> None:
    """Register the decide agent and its deadline timer on `ctx.app`."""
    decider = Decider(ctx.settings.decide_deadline_ms / 1000)
    metrics = ctx.metrics
    batch_seconds = metrics.agent_batch_seconds.labels(NAME)

    async def emit(entry: Pending, decision: Decision) -> None:
        base = entry.context()
        assert base is not None
        now = datetime.now(timezone.utc)
        received_ms = (entry.signals.get("intake") or base).evidence.get("received_ms")
        latency_ms = time.time() * 1000 - received_ms if received_ms else None
        verdict = VerdictData(
            content_type=entry.content_type,  # type: ignore[arg-type]
            content_id=entry.content_id,
            verdict=decision.verdict,  # type: ignore[arg-type]
            decision_id=decision.decision_id,
            post_id=base.post_id,
            thread_id=base.thread_id,
            reasons=list(decision.reasons),
            policy_version=decision.policy_version,
            latency_ms=round(latency_ms, 1) if latency_ms is not None else None,
        )
        await ctx.send(VERDICTS, *encode(
            VERDICTS, verdict, source="vigil/decide", event_id=f"vrd-{decision.decision_id}",
            time=now, signer=ctx.signer,
        ))
        metrics.verdicts.labels(entry.content_type, decision.verdict).inc()
        if latency_ms is not None:
            metrics.verdict_latency.labels(entry.content_type).observe(latency_ms / 1000)
        target = Target(
            type=entry.content_type,  # type: ignore[arg-type]
            id=entry.content_id,
            post_id=base.post_id,
            thread_id=base.thread_id,
            author_id=base.author_id,
        )
        if decision.action is not None:
            takedown = TakedownData(
                decision_id=decision.decision_id,
                action=decision.action,  # type: ignore[arg-type]
                target=target,
                reasons=list(decision.reasons),
                severity=decision.severity,  # type: ignore[arg-type]
                policy_version=decision.policy_version,
                decided_at=now,
            )
            await ctx.send(TAKEDOWNS, *encode(
                TAKEDOWNS, takedown, source="vigil/decide",
                event_id=f"tkd-{decision.decision_id}", time=now, signer=ctx.signer,
            ))
            metrics.takedowns.labels(decision.action, decision.severity).inc()
        event_time = _event_time(base) or now
        for spec in decision.alerts:
            alert = AlertData(
                alert_id=f"alr-{decision.decision_id}-{spec.kind}",
                kind=spec.kind,
                severity=spec.severity,  # type: ignore[arg-type]
                summary=spec.summary,
                target=target,
                evidence={**spec.evidence, "decision_id": decision.decision_id},
                first_seen=event_time,
                last_seen=event_time,
                count=1,
                dedup_key=spec.dedup_key,
                runbook_url=f"docs/runbook.md#{spec.kind}",
            )
            await ctx.send(ALERTS, *encode(
                ALERTS, alert, source="vigil/decide", event_id=alert.alert_id, time=now,
            ))
            metrics.alerts.labels(spec.kind, spec.severity).inc()

    async def decide_verdicts(stream: Any) -> None:
        async for events in stream.take_events(ctx.settings.batch_size, ctx.settings.batch_within):
            with batch_seconds.time():
                now = time.monotonic()
                touched: dict[int, Pending] = {}
                for _, signal, _ in decode_events(SIGNALS, events):
                    if signal is None:
                        continue
                    entry = decider.add(signal.data, now)
                    if entry is not None:
                        touched[id(entry)] = entry
                for entry in touched.values():
                    decision = decider.try_decide(entry, now)
                    if decision is not None:
                        await emit(entry, decision)
                metrics.decide_pending.set(len(decider.pending))

    ctx.app.agent(ctx.topic(SIGNALS), name="vigil.decide.decide_verdicts")(decide_verdicts)

    async def decide_overdue() -> None:
        now = time.monotonic()
        for entry in decider.overdue(now):
            decision = decider.try_decide(entry, now)
            if decision is not None:
                await emit(entry, decision)
        metrics.decide_pending.set(len(decider.pending))

    ctx.app.timer(0.25, name="vigil.decide.decide_overdue")(decide_overdue)


def _event_time(signal: SignalData) -> datetime | None:
    value = signal.evidence.get("event_time")
    return datetime.fromisoformat(value) if isinstance(value, str) else None

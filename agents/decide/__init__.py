"""Decide agent: joins each content's signals, applies the policy, emits verdicts, takedowns,
alerts and shadow signals; applies moderators' reviews; runs time-boxed mitigations.

Signals are keyed by content id, so every signal of one content arrives on one partition and one
worker. The agent keeps a small pending entry per content until the policy can decide (all
required signals in, or a `block` hit) or the deadline passes (then a missing detector means
`hold`: fail closed). Decisions are idempotent: ids are derived from the content, verdict and
policy version, output event ids from the decision id, and decided contents are remembered
(bounded) — every worker's, read back from the verdicts topic — so a redelivered, resent or
re-emitted content never emits a second action.

Reviews (`safety.reviews.v1`) name a decision: `restore` emits a `restore` takedown and an
`allow` verdict under a new deterministic decision id, `confirm` makes the decision final (and
hides content that was allowed), both resolve its alerts; `escalate` raises a
`review_escalated` alert that pages. A `restore` naming a mitigation lifts it.

Modules: `decider` (join state, records), `mitigations` (which are in force, what they do),
`outputs` (decisions → events), `follower` (reads alerts and every worker's decisions on every
partition). See docs/policy.md.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from agents.consumer import Batch
from agents.consumer import Record as Input
from agents.context import AgentContext, Outbox, decode_events
from agents.decide.decider import Decider, Pending, Record
from agents.decide.follower import Follower, Read
from agents.decide.mitigations import KIND, Active, MitigationBook
from agents.decide.outputs import (
    Output,
    alert_outputs,
    decision_outputs,
    mitigation_output,
    review_outputs,
)
from agents.policy import Decision, Policy, PolicyStore
from streams.codec import DecodeError, decode, encode
from streams.events import AlertData, ReviewData, SignalData, TakedownData
from streams.topics import ALERTS, REVIEWS, SIGNALS, TAKEDOWNS, VERDICTS

NAME = "decide"
SOURCE = "vigil/decide"
log = logging.getLogger(__name__)

__all__ = ["NAME", "SOURCE", "Decider", "Output", "Pending", "Record", "alert_outputs",
           "decision_outputs", "mitigation_output", "register", "review_outputs"]


class _Children:
    """A labelled metric's children, looked up once: prometheus_client's `labels()` builds a
    tuple and takes a lock on every call, a few µs per decision on decide's hot path."""

    __slots__ = ("_metric", "_cache")

    def __init__(self, metric: Any) -> None:
        self._metric, self._cache = metric, {}

    def __call__(self, *values: str) -> Any:
        child = self._cache.get(values)
        if child is None:
            child = self._cache[values] = self._metric.labels(*values)
        return child


def register(ctx: AgentContext) -> None:
    """Register the decide agents (signals, reviews), the follower of the alerts topic and the
    deadline/expiry/reload timers."""
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
    book = MitigationBook(store)
    decider = Decider(ctx.settings.decide_deadline_ms / 1000, store, book,
                      memory=ctx.settings.decide_memory)
    batch_seconds = metrics.agent_batch_seconds.labels(NAME)
    alerts_sent, takedowns_sent = _Children(metrics.alerts), _Children(metrics.takedowns)
    verdicts_sent, shadow_hits = _Children(metrics.verdicts), _Children(metrics.shadow_hits)
    event_to_verdict = _Children(metrics.event_to_verdict)
    verdict_latency = _Children(metrics.verdict_latency)
    takedown_latency = _Children(metrics.takedown_latency)

    def add_all(out: Outbox, outputs: list[Output], now: datetime) -> None:
        for o in outputs:
            signed = ctx.signer if o.spec.signed else None
            out.add(o.spec, *encode(o.spec, o.data, source=SOURCE, event_id=o.event_id,
                                    time=now, signer=signed))
            if isinstance(o.data, AlertData):
                alerts_sent(o.data.kind, o.data.severity).inc()
            elif isinstance(o.data, TakedownData):
                takedowns_sent(o.data.action, o.data.severity).inc()
            elif isinstance(o.data, SignalData):
                shadow_hits(o.data.evidence.get("rule", "?"),
                            o.data.evidence.get("would_action", "?")).inc()

    def emit(out: Outbox, entry: Pending, decision: Decision, now: datetime) -> None:
        base = entry.signals.get("intake") or entry.context()
        received_ms = base.evidence.get("received_ms") if base else None
        latency_ms = time.time() * 1000 - received_ms if received_ms else None
        event_time = entry.event_time()
        add_all(out, decision_outputs(decision, entry.target(), now=now,
                                      event_time=event_time, latency_ms=latency_ms),
                now)
        verdicts_sent(entry.content_type, decision.verdict).inc()
        if event_time is not None:
            event_to_verdict(entry.content_type).observe(
                max(0.0, (now - event_time).total_seconds()))
        if latency_ms is not None:
            verdict_latency(entry.content_type).observe(latency_ms / 1000)
            if decision.verdict != "allow":
                # by hour of the content's event time: night vs day time-to-takedown
                hour = f"{(event_time or now).astimezone(timezone.utc).hour:02d}"
                takedown_latency(hour).observe(latency_ms / 1000)

    def release(entries: list[Pending]) -> None:
        """Release the inputs held for decided contents (their outputs are delivered by now)."""
        for entry in entries:
            for hold in entry.held:
                loop.offsets.release(hold)
            entry.held.clear()

    async def decide_verdicts(batch: Batch) -> None:
        # One outbox per batch: its outputs are delivered before the loop marks the batch's
        # offsets committable (at-least-once), in a few produce requests, not one per output.
        if not follower.alerts_ready.is_set():
            await follower.alerts_ready.wait()  # the mitigations in force are known
        with batch_seconds.time():
            decided: list[Pending] = []
            async with ctx.outbox() as out:
                now = time.monotonic()
                wall = datetime.now(timezone.utc)
                # each touched window, with the first record of this batch that fed it
                touched: dict[int, tuple[Pending, Input]] = {}
                for record in batch.records:
                    try:
                        signal = decode(SIGNALS, record.value)
                    except DecodeError:
                        continue  # our own topic: only Vigil's agents write valid signals
                    entry = decider.add(signal.data, now)
                    if entry is not None and id(entry) not in touched:
                        touched[id(entry)] = entry, record
                for entry, record in touched.values():
                    if decider.superseded(entry):
                        decided.append(entry)  # decided elsewhere: release, no output
                        continue
                    # overdue windows wait for decide_overdue's sync with the verdicts
                    decision = decider.try_decide(entry, now, wall, at_deadline=False)
                    if decision is not None:
                        emit(out, entry, decision, wall)
                        decided.append(entry)
                    elif not any(hold[0].partition == record.partition for hold in entry.held):
                        # Still open after this batch: its first record here stays
                        # uncommitted until it is decided. One hold per window and partition
                        # is enough (the commit stops at the lowest), and a window decided
                        # within its batch needs none: the loop marks the batch delivered
                        # only after this outbox is.
                        entry.held.append(batch.hold(record))
                metrics.decide_pending.set(len(decider.pending))
            release(decided)  # after the outbox delivered their outputs

    def on_revoked(partitions: set[Any]) -> None:
        dropped = decider.drop_partitions(partitions)
        if dropped:
            log.info("rebalance: %d undecided windows of %d revoked partitions left to their "
                     "new owner", dropped, len(partitions))
        metrics.decide_pending.set(len(decider.pending))

    loop = ctx.consume(f"{NAME}.verdicts", (SIGNALS,), decide_verdicts, on_revoked=on_revoked,
                       verdict_path=True)

    async def apply_reviews(stream: Any) -> None:
        async for events in stream.take_events(ctx.settings.batch_size, ctx.settings.batch_within):
            await follower.caught_up.wait()  # decisions before a restart are known by then
            async with ctx.outbox() as out:
                for _, event, _ in decode_events(REVIEWS, events):
                    if event is None:
                        continue  # intake dead-letters it
                    review: ReviewData = event.data
                    mitigation = book.by_decision(review.decision_id)
                    if mitigation is not None and review.outcome == "restore":
                        lift(out, mitigation, review)
                        continue
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

    def lift(out: Outbox, entry: Active, review: ReviewData) -> None:
        """A `restore` review naming a mitigation lifts it (the console's "lift now")."""
        now = datetime.now(timezone.utc)
        applied = book.lift(entry, review.reviewer or "moderator", now)
        metrics.reviews.labels(review.outcome, "applied" if applied else "duplicate").inc()
        if applied and entry.mitigation.mode == "enforce":
            add_all(out, [mitigation_output(entry)], now)

    async def on_alerts(batch: Read, settle: bool) -> None:
        """Feed the follower's records to the book and the decision memory; once caught up,
        announce what this worker owes (a start, or after a restart what is overdue)."""
        for spec, event, record_time in batch:
            data = event.data
            if spec is VERDICTS:
                decider.remember_verdict(data)
            elif spec is TAKEDOWNS:
                decider.remember_takedown(data)
            elif event.source == SOURCE:  # our own alert: never a trigger
                if data.kind == KIND:
                    book.on_announcement(data)
                else:
                    decider.remember_alert(data)
            else:
                book.on_trigger(data, record_time)
        if settle or follower.alerts_ready.is_set():
            await announce_mitigations()

    follower = Follower(
        getattr(ctx.settings, "bootstrap_servers", ""), ctx.settings.topic_prefix,
        follow=(ALERTS,), history=(VERDICTS, TAKEDOWNS), on_batch=on_alerts)

    async def follow_alerts() -> None:
        await follower.run()

    ctx.app.task(follow_alerts)

    async def announce_mitigations() -> None:
        """Lift expired mitigations, and announce the starts and lifts this worker owes: the
        worker that owns the signals partition a scope id maps to (`ConsumeLoop.owns`)
        announces it, the others only apply it. Also a timer, so a mitigation whose
        announcer died or changed in a rebalance is announced by the next owner."""
        now = datetime.now(timezone.utc)
        book.expire(now)
        due = book.to_announce(now, loop.owns)
        if due:
            async with ctx.outbox() as out:
                for entry in due:
                    add_all(out, [mitigation_output(entry)], now)
                    log.warning("mitigation %s %s on %s %s until %s", entry.mitigation.name,
                                "lifted" if entry.lifted_by else "started",
                                entry.mitigation.scope, entry.scope_id, entry.expires_at)
        book.forget(now)

    async def expire_mitigations() -> None:
        if follower.alerts_ready.is_set():
            await announce_mitigations()

    ctx.app.timer(1.0, name="vigil.decide.expire_mitigations")(expire_mitigations)

    async def decide_overdue() -> None:
        """Decide the windows whose deadline passed — after reading every verdict published
        until now, so a window re-opened by signals re-emitted after a rebalance, for content
        another worker already decided, is dropped instead of held for missing detectors."""
        if not decider.overdue(time.monotonic()):
            return
        await follower.sync()
        decided: list[Pending] = []
        async with ctx.outbox() as out:
            now = time.monotonic()
            wall = datetime.now(timezone.utc)
            for entry in decider.overdue(now):
                if decider.superseded(entry):
                    decided.append(entry)  # decided elsewhere: ack, no output
                    continue
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

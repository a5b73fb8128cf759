"""The decide agent's join state: pending windows, decided contents, decision records.

No I/O and no clock of its own: the agent passes `now` (monotonic s, for deadlines) and the
wall time, so tests drive it directly.

Records of every decision (allow too: a moderator may `confirm` that a post allowed by the
detectors is part of a raid) are kept bounded, by decision id, for reviews. They are also
learnt from the verdicts, takedowns and alerts topics (`remember_*`, fed by
`agents.decide.follower`: before a restart and since, by any worker), so a review of a
decision taken before a restart or elsewhere still applies, a window opened for content
decided elsewhere is dropped (`superseded`), and a review applied before a restart — its
decision, escalation or resolved alerts are on those topics — is a `duplicate` when the reviews
topic redelivers it (a review with no output at all applies again: harmless, it emits nothing).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from agents.decide.mitigations import MitigationBook, is_young, mitigate
from agents.policy import (
    SHADOW_PREFIX,
    AlertSpec,
    Decision,
    Policy,
    ReviewEffect,
    decide_content,
    load_default_policy,
    review_decision_id,
    review_effect,
)
from streams.events import AlertData, ReviewData, SignalData, TakedownData, Target, VerdictData

DECIDED_MEMORY = 200_000  # default: contents remembered after their decision (≈ 20 MB)


@dataclass
class Pending:
    """Signals received so far for one content, and when its window opened (monotonic s)."""

    content_type: str
    content_id: str
    opened: float
    signals: dict[str, SignalData] = field(default_factory=dict)
    #: Holds on input records — (partition, offset), agents/consumer.py — kept uncommitted
    #: until this content is decided and its outputs are delivered, so a crash before that
    #: redelivers them instead of losing the window.
    held: list[tuple[Any, int, int]] = field(default_factory=list)
    #: A retroactive re-decision of decided content: decided at once, never superseded.
    redecide: bool = False
    #: Parsed once per content (the hot path asks for them several times).
    _event_time: datetime | None = None
    _target: Target | None = None

    def context(self) -> SignalData | None:
        """The signal with the most context (intake's, else any)."""
        return self.signals.get("intake") or next(iter(self.signals.values()), None)

    def event_time(self) -> datetime | None:
        """The content's event time on the forum (from intake), for staffed hours."""
        if self._event_time is None:
            intake = self.signals.get("intake")
            value = intake.evidence.get("event_time") if intake is not None else None
            try:
                self._event_time = (datetime.fromisoformat(value) if isinstance(value, str)
                                    else None)
            except ValueError:
                return None
        return self._event_time

    def board(self) -> str | None:
        intake = self.signals.get("intake")
        value = intake.evidence.get("board") if intake is not None else None
        return value if isinstance(value, str) and value else None

    def target(self) -> Target:
        """What the decision is about; fixed once asked (at the decision)."""
        if self._target is None:
            self._target = self._build_target()
        return self._target

    def _build_target(self) -> Target:
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
    """A decision, kept so a review can undo, confirm or (for an allowed one) hide it."""

    decision: Decision
    target: Target
    event_time: datetime | None
    final: bool = False


class Decider:
    """The join state and the steps that turn it into decisions (no I/O: tested directly).

    `policy` is the policy in force, or a callable returning it (hot reload); `mitigations`
    the time-boxed mitigations known to this worker. `memory` bounds what is kept after a
    decision (`VIGIL_DECIDE_MEMORY`): that many decided contents (late signals for them open no
    second decision), half as many decisions (and review outcomes) for reviews, a quarter as
    many thread → board entries; the oldest go first.
    """

    def __init__(self, deadline_s: float,
                 policy: Policy | Callable[[], Policy] | None = None,
                 mitigations: MitigationBook | None = None,
                 memory: int = DECIDED_MEMORY) -> None:
        self.deadline_s = deadline_s
        self.decided_memory = memory
        self.record_memory = max(memory // 2, 1)
        self.board_memory = max(memory // 4, 1)
        if policy is None:
            policy = load_default_policy()
        self.policy: Callable[[], Policy] = policy if callable(policy) else (lambda: policy)
        self.mitigations = mitigations if mitigations is not None else MitigationBook(
            self.policy)
        self.boards: OrderedDict[str, str] = OrderedDict()
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
                                        now - self.deadline_s, redecide=True)
        entry = self.pending.get(key)
        if entry is None:
            entry = self.pending[key] = Pending(signal.content_type, signal.content_id, now)
        entry.signals[signal.detector] = signal
        board = signal.evidence.get("board") if signal.detector == "intake" else None
        if board and signal.thread_id and signal.content_type == "post":
            _remember(self.boards, signal.thread_id, board, self.board_memory)
        return entry

    def try_decide(self, entry: Pending, now: float, at: datetime | None = None, *,
                   at_deadline: bool = True) -> Decision | None:
        """Decide `entry` if the policy can; the entry then leaves the pending set.

        `at` (wall time) is used for staffed hours only when the content carries no event
        time, and says which mitigations are in force. `at_deadline=False` decides complete
        windows only: the agent decides overdue ones in its deadline pass, once it has read
        the decisions other workers published meanwhile (see `superseded`).
        """
        overdue = now - entry.opened >= self.deadline_s and (at_deadline or entry.redecide)
        if entry.signals.get("intake") is None and not overdue:
            return None  # wait for intake's context (post/thread ids) unless it is overdue
        event_time = entry.event_time() or at
        decision = decide_content(
            self.policy(),
            entry.content_type,
            entry.content_id,
            entry.signals,
            deadline_passed=overdue,
            at=event_time,
        )
        if decision is not None:
            decision = self._mitigated(entry, decision, event_time, at)
            key = f"{entry.content_type}:{entry.content_id}"
            self.pending.pop(key, None)
            _remember(self.decided, key, decision.decision_id, self.decided_memory)
            _remember(self.records, decision.decision_id,
                      Record(decision, entry.target(), event_time), self.record_memory)
        return decision

    def _mitigated(self, entry: Pending, decision: Decision, event_time: datetime | None,
                   at: datetime | None) -> Decision:
        """`decision` under the mitigations covering the content, if its author is young."""
        if at is None or not self.mitigations.entries:
            return decision
        base = entry.context()
        thread_id = base.thread_id if base else None
        board = entry.board() or (self.boards.get(thread_id) if thread_id else None)
        covering = self.mitigations.covering(entry.content_type, thread_id, board, at)
        intake = entry.signals.get("intake")
        evidence = intake.evidence if intake is not None else {}
        hits = [m for m in covering
                if is_young(evidence, event_time or at, m.mitigation.young_account_days)]
        if not hits:
            return decision
        return mitigate(decision, entry.content_type, entry.content_id, hits)

    def superseded(self, entry: Pending) -> bool:
        """Whether `entry`'s content was decided after its window opened — by this worker
        or, learnt from the verdicts topic, by another (signals re-emitted after a rebalance
        reach the new owner of the partition, which never saw the first window). Such a
        window is dropped: it leaves the pending set, and the caller acks its input without
        output. A retroactive re-decision is never superseded."""
        key = f"{entry.content_type}:{entry.content_id}"
        if entry.redecide or key not in self.decided:
            return False
        if self.pending.get(key) is entry:
            del self.pending[key]
        return True

    def drop_partitions(self, partitions: set[Any]) -> int:
        """Forget the windows holding inputs of `partitions` (revoked by a rebalance: their
        new owner rereads those inputs from the last commit and opens the windows again, so
        keeping them here would decide the same content twice). Returns how many."""
        gone = [key for key, entry in self.pending.items()
                if any(hold[0] in partitions for hold in entry.held)]
        for key in gone:
            del self.pending[key]
        return len(gone)

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
        _remember(self.reviewed, key, review.outcome, self.record_memory)
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
        if effect.decision is not None and record is not None:
            self.decided[f"{record.target.type}:{record.target.id}"] = (
                effect.decision.decision_id)
            _remember(self.records, effect.decision.decision_id,
                      Record(effect.decision, record.target, record.event_time,
                             final=effect.final), self.record_memory)
        return "applied", effect, record

    # -- rebuilt after a restart from the output topics (agents.decide.follower)

    def remember_verdict(self, verdict: VerdictData) -> None:
        """A verdict read back from `safety.verdicts.v1` (any worker's, any time): its content
        is decided (later signals for it are dropped), and a review may name the decision."""
        key = f"{verdict.content_type}:{verdict.content_id}"
        previous = self.decided.get(key)
        if previous is None:
            _remember(self.decided, key, verdict.decision_id, self.decided_memory)
        elif previous != verdict.decision_id and any(r.detector == "review"
                                                     for r in verdict.reasons):
            self._learn_review(key, previous, verdict.decision_id)
        # else this worker's own entry may be newer: keep it
        if verdict.decision_id in self.records:
            return
        decision = Decision(verdict.decision_id, verdict.verdict, None, "low",
                            tuple(verdict.reasons), policy_version=verdict.policy_version or "")
        target = Target(type=verdict.content_type, id=verdict.content_id,
                        post_id=verdict.post_id, thread_id=verdict.thread_id)
        _remember(self.records, verdict.decision_id, Record(decision, target, None),
                  self.record_memory)

    def _learn_review(self, key: str, previous: str, decision_id: str) -> None:
        """A review's decision read back: mark the review of `previous` (the content's decision
        before it — verdicts are keyed by content, so read in order) as applied, and make the
        new decision the content's current one, as `review` does live."""
        for outcome in ("restore", "confirm"):
            if review_decision_id(previous, outcome) == decision_id:
                _remember(self.reviewed, f"{previous}/{outcome}", outcome, self.record_memory)
                self.decided[key] = decision_id
                return

    def remember_takedown(self, takedown: TakedownData) -> None:
        """A takedown read back: its action is what a `restore` undoes."""
        record = self.records.get(takedown.decision_id)
        if record is not None and record.decision.action is not None:
            return
        base = record.decision if record is not None else Decision(
            takedown.decision_id, "hold", None, "low", (),
            policy_version=takedown.policy_version or "")
        decision = replace(base, action=takedown.action, severity=takedown.severity,
                           reasons=tuple(takedown.reasons))
        _remember(self.records, takedown.decision_id,
                  Record(decision, takedown.target, None), self.record_memory)

    def remember_alert(self, alert: AlertData) -> None:
        """One of decide's own alerts read back: a review resolves it. An escalation, or an
        alert a review resolved, also says that review was applied."""
        about = str(alert.evidence.get("decision_id"))
        outcome = ("escalate" if alert.kind == "review_escalated"
                   else alert.evidence.get("resolved_by")
                   if alert.evidence.get("resolved") is True else None)
        if outcome in ("escalate", "confirm", "restore"):
            _remember(self.reviewed, f"{about}/{outcome}", str(outcome), self.record_memory)
        record = self.records.get(about)
        if record is None or not alert.dedup_key:
            return
        kept = tuple(a for a in record.decision.alerts if a.dedup_key != alert.dedup_key)
        if alert.evidence.get("resolved") is not True:
            evidence = {k: v for k, v in alert.evidence.items() if k != "decision_id"}
            kept += (AlertSpec(alert.kind, alert.severity, alert.summary, alert.dedup_key,
                               evidence),)
        record.decision = replace(record.decision, alerts=kept)


def _remember(table: OrderedDict[str, Any], key: str, value: Any, limit: int) -> None:
    table[key] = value
    table.move_to_end(key)
    while len(table) > limit:
        table.popitem(last=False)



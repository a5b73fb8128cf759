"""Time-boxed mitigations: which are in force, where, until when; and what they do to a decision.

A policy `[[mitigations]]` entry starts when an alert of one of its `on` kinds arrives (the burst
agent's `thread_raid`, `new_account_swarm`). Its start is the trigger's Kafka record timestamp
— the broker-side moment the raid was announced — so replaying the alerts topic after a restart
rebuilds the very same mitigations, dedup keys and decision ids. It expires by **wall clock**
`duration_minutes` later: a raided thread that goes quiet has no new events to move event time
forward, yet its restriction must still lift on time for the honest users who come back.

No I/O here: `MitigationBook` is fed alerts (live, or replayed by `follower`) and a clock by the
agent, and `mitigate` turns a decision into the held one. Tested directly.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any

from agents.policy import Decision, Mitigation, Policy, ShadowEffect, decision_id
from agents.policy.model import VERDICT_OF, most_severe, strongest
from streams.events import AlertData, Reason, SignalData

KIND = "mitigation"
HOLD = "hold_for_review"
log = logging.getLogger(__name__)


def stamp(at: datetime) -> str:
    """Compact UTC stamp for dedup keys (the burst agent's format)."""
    return at.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def rfc3339(at: datetime) -> str:
    return at.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass
class Active:
    """One mitigation started by one trigger alert (lifted ones are kept, to stay lifted)."""

    mitigation: Mitigation
    scope_id: str
    started: datetime
    trigger: str  # dedup key of the alert that started it
    announced: bool = False  # its start is on the alerts topic (or sent by this worker)
    lifted_by: str | None = None  # "expiry" or the reviewer
    lift_announced: bool = False  # its lift is on the alerts topic (or sent by this worker)
    resolved_at: datetime | None = None

    @property
    def expires_at(self) -> datetime:
        return self.started + timedelta(minutes=self.mitigation.duration_minutes)

    @property
    def dedup_key(self) -> str:
        m = self.mitigation
        return f"{KIND}:{m.action}:{self.scope_id}:{stamp(self.started)}"

    @property
    def decision_id(self) -> str:
        """What the console sends back in a `restore` review to lift it."""
        return "dec-" + hashlib.sha256(self.dedup_key.encode()).hexdigest()[:32]

    def in_force(self, now: datetime) -> bool:
        return self.lifted_by is None and now < self.expires_at

    def covers(self, content_type: str, thread_id: str | None, board: str | None) -> bool:
        if self.mitigation.action == "restrict_thread":
            return thread_id == self.scope_id
        return content_type == "image" and board == self.scope_id


def scope_of(mitigation: Mitigation, alert: AlertData) -> str | None:
    """The thread or board the trigger alert is about (None: it names none)."""
    target = alert.target
    if mitigation.scope == "thread":
        if target is not None and target.type == "thread":
            return target.id
        return target.thread_id if target is not None else None
    if target is not None and target.type == "board":
        return target.id
    board = alert.evidence.get("board")
    return board if isinstance(board, str) and board and board != "-" else None


class MitigationBook:
    """Mitigations known to this worker, keyed by their dedup key.

    `policy` is called for the mitigations in force (hot reload): a trigger starts the entries
    of the policy at the time it is seen.
    """

    def __init__(self, policy: Callable[[], Policy]) -> None:
        self.policy = policy
        self.entries: dict[str, Active] = {}
        self._by_trigger: dict[tuple[str, str], str] = {}  # (name, trigger key) → dedup key
        self._by_decision: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def on_trigger(self, alert: AlertData, record_time: datetime) -> list[Active]:
        """Start what a burst alert calls for; return the entries it started."""
        if alert.evidence.get("resolved") is True or not alert.dedup_key:
            return []  # the raid is over; a running mitigation stays until it expires
        started: list[Active] = []
        for m in self.policy().mitigations:
            if alert.kind not in m.on or (m.name, alert.dedup_key) in self._by_trigger:
                continue
            scope = scope_of(m, alert)
            if scope is None:
                log.warning("alert %s names no %s: mitigation %s not started",
                            alert.dedup_key, m.scope, m.name)
                continue
            entry = self._add(Active(m, scope, record_time, alert.dedup_key))
            self._by_trigger[(m.name, alert.dedup_key)] = entry.dedup_key
            started.append(entry)
        return started

    def on_announcement(self, alert: AlertData) -> None:
        """Learn from a `mitigation` alert (ours, or another decide worker's): announced,
        lifted. Rebuilds the entry if its trigger is gone from the topic (retention)."""
        ev = alert.evidence
        key = alert.dedup_key or ""
        entry = self.entries.get(key)
        if entry is None:
            m = next((m for m in self.policy().mitigations if m.name == ev.get("rule")), None)
            if m is None or alert.first_seen is None or alert.target is None:
                return
            entry = self._add(Active(m, alert.target.id, alert.first_seen,
                                     str(ev.get("trigger", ""))))
            self._by_trigger[(m.name, entry.trigger)] = entry.dedup_key
        entry.announced = True
        if ev.get("resolved") is not True:
            return
        entry.lift_announced = True
        if entry.lifted_by is None:
            entry.lifted_by = str(ev.get("lifted_by") or "?")
            resolved_at = ev.get("resolved_at")
            entry.resolved_at = (datetime.fromisoformat(resolved_at)
                                 if isinstance(resolved_at, str) else entry.expires_at)

    def _add(self, entry: Active) -> Active:
        self.entries.setdefault(entry.dedup_key, entry)
        self._by_decision[entry.decision_id] = entry.dedup_key
        return self.entries[entry.dedup_key]

    def by_decision(self, decision_id: str) -> Active | None:
        key = self._by_decision.get(decision_id)
        return self.entries.get(key) if key is not None else None

    def lift(self, entry: Active, by: str, now: datetime) -> bool:
        """Lift `entry` early (a moderator); False if it was no longer in force."""
        if not entry.in_force(now):
            return False
        entry.lifted_by, entry.resolved_at = by, now
        entry.lift_announced = True  # whoever lifts it announces it
        return True

    def expire(self, now: datetime) -> None:
        """Lift every entry whose time is up (`to_announce` then says who resolves it)."""
        for entry in self.entries.values():
            if entry.lifted_by is None and now >= entry.expires_at:
                entry.lifted_by, entry.resolved_at = "expiry", entry.expires_at

    def to_announce(self, now: datetime, announces: Callable[[str], bool]) -> list[Active]:
        """Enforced entries whose start, or lift, is not on the alerts topic yet, among those
        this worker announces (`announces(scope_id)`: one worker of the group per scope, so
        each mitigation is announced once, not by every decide worker). They are marked as
        announced; the caller sends their `mitigation_output`.

        Every worker knows every entry (the follower), so if the announcing worker dies or
        the scope changes hands in a rebalance, the next one announces what is still missing.
        An entry lifted before anyone announced it is never announced at all."""
        due: list[Active] = []
        for entry in self.entries.values():
            if entry.mitigation.mode != "enforce" or entry.lift_announced:
                continue
            if not entry.announced and not entry.in_force(now):
                continue
            if not announces(entry.scope_id):
                continue
            if entry.announced:
                if entry.lifted_by is None:
                    continue
                entry.lift_announced = True
            entry.announced = True
            due.append(entry)
        return due

    def forget(self, now: datetime, keep: timedelta = timedelta(days=1)) -> None:
        """Drop entries lifted more than `keep` ago (their triggers are long over)."""
        for key, entry in list(self.entries.items()):
            if entry.resolved_at is not None and now - entry.resolved_at > keep:
                del self.entries[key]
                self._by_decision.pop(entry.decision_id, None)
                self._by_trigger.pop((entry.mitigation.name, entry.trigger), None)

    def covering(self, content_type: str, thread_id: str | None, board: str | None,
                 now: datetime) -> list[Active]:
        """Mitigations in force at `now` whose scope holds this content."""
        return [e for e in self.entries.values()
                if e.in_force(now) and e.covers(content_type, thread_id, board)]


def is_young(evidence: dict[str, Any], at: datetime, days: float) -> bool:
    """Whether the author (intake's evidence) was younger than `days` at `at`.

    Staff accounts never are. An account whose age the forum did not send counts as young: a
    mitigation is the stricter side for as long as it lasts, like unknown hours are unstaffed.
    """
    if evidence.get("author_is_staff") is True:
        return False
    created = evidence.get("author_created_at")
    if not isinstance(created, str):
        return True
    try:
        born = datetime.fromisoformat(created)
    except ValueError:
        return True
    return at - born < timedelta(days=days)


def mitigate(decision: Decision, content_type: str, content_id: str,
             hits: list[Active]) -> Decision:
    """`decision` under the mitigations `hits`: enforced ones hold it for review (unless it is
    already stronger), shadow ones add a `shadow:<name>` effect."""
    enforced = [h for h in hits if h.mitigation.mode == "enforce"]
    shadow = tuple(ShadowEffect(h.mitigation.name, HOLD, h.mitigation.severity, SignalData(
        detector=KIND, detector_version=decision.policy_version, content_type=content_type,  # type: ignore[arg-type]
        content_id=content_id, status="match",
        evidence={"mitigation": h.mitigation.action, "mitigation_id": h.decision_id}))
        for h in hits if h.mitigation.mode == "shadow")
    if not enforced:
        return replace(decision, shadow=decision.shadow + shadow) if shadow else decision
    action = strongest(decision.action or HOLD, HOLD)
    verdict = VERDICT_OF[action]
    reasons = decision.reasons + tuple(
        Reason(detector=KIND, signal=h.mitigation.action) for h in enforced)
    severity = most_severe(*([decision.severity] if decision.action else []),
                           *(h.mitigation.severity for h in enforced))
    return replace(
        decision, verdict=verdict, action=action, severity=severity, reasons=reasons,
        decision_id=decision_id(content_type, content_id, verdict, decision.policy_version),
        shadow=decision.shadow + shadow)

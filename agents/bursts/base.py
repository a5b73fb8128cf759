"""What every burst detector shares: the protocol, thresholds, trust, and the incident lifecycle.

A burst detector is pure: `observe(data, at)` takes one validated input payload and its event
time (epoch seconds: the CloudEvent `time`, else the Kafka record timestamp) and returns the
alert updates it causes; `advance(watermark)` expires idle state and resolves incidents that
went quiet. Neither reads a clock, so replaying the same input in the same order gives the very
same alerts, ids included. The agent (`agents/burst.py`) owns one detector set per input
partition and drives the watermark (max event time seen on that partition − allowed lateness).

Incidents (`Incidents`): one incident = one `dedup_key` = `<kind>:<key>:<first_seen UTC>`. The
first alert opens it; while it goes on, an update (same `dedup_key`, new `alert_id`, higher
`count`, later `last_seen`) is re-sent when the count grew by half since the last one sent or
the severity rose; when nothing new arrived for the kind's window of event time it is
resolved: a last alert with the same `dedup_key` and `evidence.resolved = true`,
`evidence.resolved_at` = last_seen + window (AlertData has no status field; the notifiers read
`evidence.resolved`).
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass, field
from datetime import datetime, time, timezone
from typing import Any, ClassVar, Protocol
from zoneinfo import ZoneInfo

from agents.policy.model import BurstThresholds, Policy, TrustWeights
from streams.events import Account, AlertData, Severity, Target

VERSION = "burst-1"
_SEVERITY_RANK = {"low": 0, "medium": 1, "high": 2, "critical": 3}


def utc(at: float) -> datetime:
    """Epoch seconds → aware UTC datetime."""
    return datetime.fromtimestamp(at, timezone.utc)


def stamp(at: float) -> str:
    """Compact UTC stamp for dedup keys: 20250204T021305Z."""
    return utc(at).strftime("%Y%m%dT%H%M%SZ")


def account_age(account: Account, at: float) -> float | None:
    """Seconds between account creation and `at`; None when the forum did not say."""
    if account.created_at is None:
        return None
    return max(0.0, at - account.created_at.timestamp())


# ------------------------------------------------------------------------------ configuration


@dataclass(frozen=True)
class StaffedHours:
    """Moderators on duty `start`–`end` (local hours, `end < start` spans midnight) in `timezone`.

    Mirrors `agents.policy.StaffedHours.covers` so the agent can pass the policy's object in
    instead (any object with `covers(datetime) -> bool`).
    """

    timezone: str = "UTC"
    start: time = time(8, 0)
    end: time = time(22, 0)

    def covers(self, at: datetime | None) -> bool:
        if at is None:
            return False
        local = at.astimezone(ZoneInfo(self.timezone)).time().replace(tzinfo=None)
        if self.start <= self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end


class Covers(Protocol):
    def covers(self, at: datetime | None) -> bool: ...


def trust_weight(weights: TrustWeights, account: Account, at: float) -> float:
    """A reporter's weight from staff flag and account age (before review accuracy)."""
    if account.is_staff:
        return weights.staff
    age = account_age(account, at)
    if age is None:
        return weights.unknown_age
    for bound, weight in weights.by_age:
        if age < bound:
            return weight
    return weights.older


@dataclass(frozen=True)
class BurstConfig:
    """The thresholds in force (the policy's `[burst]`) and when moderators are on duty.

    `at(t)` gives the thresholds for event time `t`: the staffed ones, or with the `unstaffed`
    overrides applied (computed once here, not per event).
    """

    thresholds: BurstThresholds = BurstThresholds()
    staffed_hours: Covers = field(default_factory=StaffedHours)
    unstaffed: BurstThresholds = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "unstaffed", self.thresholds.at_hours(False))

    @classmethod
    def from_policy(cls, policy: Policy) -> BurstConfig:
        return cls(policy.burst, policy.staffed_hours)

    @property
    def allowed_lateness_s(self) -> float:
        return self.thresholds.lateness_s

    @property
    def trust(self) -> TrustWeights:
        return self.thresholds.trust

    def staffed(self, at: float) -> bool:
        return self.staffed_hours.covers(utc(at))

    def at(self, at: float) -> BurstThresholds:
        return self.thresholds if self.staffed(at) else self.unstaffed


# ------------------------------------------------------------------------------ the protocol


class BurstDetector(Protocol):
    """Pure windowed detector: events and a watermark in, alert updates out."""

    kinds: ClassVar[tuple[str, ...]]
    #: Read on every call, so assigning a new one (policy reload) applies from the next event.
    config: BurstConfig

    def observe(self, data: Any, at: float) -> list[AlertData]:
        """One input payload at event time `at` (epoch s) → alerts it opens or updates."""
        ...

    def advance(self, watermark: float) -> list[AlertData]:
        """Expire state older than the windows and resolve incidents quiet since `watermark`."""
        ...

    def state_size(self) -> int:
        """Keys held (targets, threads, boards, window entries): what the gauge reports."""
        ...


# ------------------------------------------------------------------------------ incidents


@dataclass
class _Incident:
    dedup_key: str
    first_seen: float
    last_seen: float
    count: int
    severity: Severity
    summary: str
    target: Target | None
    evidence: dict[str, Any]
    seq: int = 0
    sent_count: int = 0
    sent_severity: Severity = "low"


@dataclass
class Incidents:
    """Open incidents of one kind by key: one alert to open, growing updates, one resolve."""

    kind: str
    growth: float = 1.5
    open: dict[str, _Incident] = field(default_factory=dict)

    def is_open(self, key: str) -> bool:
        return key in self.open

    def touch(self, key: str, *, first_seen: float, last_seen: float, count: int,
              severity: Severity, summary: str, target: Target | None,
              evidence: dict[str, Any]) -> list[AlertData]:
        """Open or update the incident of `key`; returns the alert to send, if any."""
        incident = self.open.get(key)
        if incident is None:
            incident = _Incident(f"{self.kind}:{key}:{stamp(first_seen)}", first_seen,
                                 last_seen, count, severity, summary, target, evidence)
            self.open[key] = incident
            return [self._send(incident)]
        incident.last_seen = max(incident.last_seen, last_seen)
        incident.count = max(incident.count, count)
        if _SEVERITY_RANK[severity] > _SEVERITY_RANK[incident.severity]:
            incident.severity = severity
        incident.summary, incident.target, incident.evidence = summary, target, evidence
        grew = incident.count >= max(incident.sent_count + 1, incident.sent_count * self.growth)
        if grew or _SEVERITY_RANK[incident.severity] > _SEVERITY_RANK[incident.sent_severity]:
            return [self._send(incident)]
        return []

    def seen(self, key: str, at: float) -> None:
        """Activity on an open incident that does not change its count (keeps it open)."""
        incident = self.open.get(key)
        if incident is not None:
            incident.last_seen = max(incident.last_seen, at)

    def resolve_quiet(self, watermark: float, quiet_s: float) -> list[AlertData]:
        """Resolve every incident with no activity for `quiet_s` (the kind's window, as in
        force now) before `watermark`."""
        out = []
        for key in [k for k, i in self.open.items() if watermark - i.last_seen >= quiet_s]:
            incident = self.open.pop(key)
            resolved_at = incident.last_seen + quiet_s
            incident.evidence = {**incident.evidence, "resolved": True,
                                 "resolved_at": utc(resolved_at).isoformat()}
            out.append(self._send(incident, suffix="resolved"))
        return out

    def _send(self, incident: _Incident, suffix: str | None = None) -> AlertData:
        label = suffix or f"u{incident.seq}"
        incident.seq += 1
        incident.sent_count, incident.sent_severity = incident.count, incident.severity
        return AlertData(
            alert_id=f"alr-{incident.dedup_key}-{label}",
            kind=self.kind,
            severity=incident.severity,
            summary=incident.summary,
            target=incident.target,
            evidence={**incident.evidence, "detector_version": VERSION},
            first_seen=utc(incident.first_seen),
            last_seen=utc(incident.last_seen),
            count=incident.count,
            dedup_key=incident.dedup_key,
            runbook_url=f"docs/runbook.md#{self.kind}",
        )


class DecayingRate:
    """An exponentially decayed event rate (events/s) with time constant `tau`: the baseline.

    `add(at)` counts one event; `rate(at)` decays to `at`. Two floats per key: memory grows
    with keys, not history.
    """

    __slots__ = ("value", "at")

    def __init__(self) -> None:
        self.value = 0.0
        self.at: float | None = None

    def rate(self, at: float, tau: float) -> float:
        if self.at is None or at <= self.at:
            return self.value
        return self.value * math.exp(-(at - self.at) / tau)

    def add(self, at: float, tau: float, weight: float = 1.0) -> None:
        self.value = self.rate(at, tau) + weight / tau
        self.at = at if self.at is None else max(self.at, at)


#: Hour-of-week buckets; epoch hour 0 (Thursday 00:00 UTC) is bucket 72, Monday 00:00 UTC is 0.
WEEK_HOURS = 168
_EPOCH_HOUR_OF_WEEK = 72


class WeeklyProfile:
    """How busy each hour of the week usually is, relative to the average hour: seasonality.

    168 buckets (UTC hour of week), each an EWMA over the weeks (`alpha`) of the events counted
    in that hour; an hour closes when an event of a later hour arrives (event time), and hours
    without events close with 0. `factor(at)` = the usual count of `at`'s hour / the mean of the
    known hours, clamped to [`low`, `high`]; an hour not seen yet borrows the same hour of day
    from the days that are known, and before a day has been learnt the factor is 1. A window
    that spans an hour boundary uses the time-weighted mean (`over`), so the last minutes of a
    busy evening are not judged by the quiet hour that follows. One profile per board: a
    board's evening is busy for all its threads (a thread alone is too sparse to learn 168
    buckets, and 1.3 KB per thread would not stay bounded).
    """

    __slots__ = ("counts", "known", "hour", "pending", "cached")
    alpha = 0.3
    low, high = 0.2, 5.0

    def __init__(self) -> None:
        self.counts = array("d", bytes(8 * WEEK_HOURS))
        self.known = bytearray(WEEK_HOURS)
        self.hour: int | None = None  # the open hour (epoch hours)
        self.pending = 0.0  # its count so far
        self.cached: dict[int, float] = {}  # epoch hour → factor, until the next hour closes

    @staticmethod
    def bucket(hour: int) -> int:
        return (hour + _EPOCH_HOUR_OF_WEEK) % WEEK_HOURS

    def add(self, at: float, weight: float = 1.0) -> None:
        hour = int(at // 3600)
        if self.hour is None:
            self.hour = hour
        elif hour > self.hour:
            for closing in range(self.hour, min(hour, self.hour + WEEK_HOURS)):
                self._close(self.bucket(closing), self.pending if closing == self.hour else 0.0)
            self.hour, self.pending = hour, 0.0
            self.cached.clear()
        elif hour < self.hour:
            return  # late, its hour already closed: within the allowed lateness, negligible
        self.pending += weight

    def _close(self, bucket: int, count: float) -> None:
        old = self.counts[bucket]
        self.counts[bucket] = old + self.alpha * (count - old) if self.known[bucket] else count
        self.known[bucket] = 1

    def factor(self, at: float) -> float:
        """The factor of `at`'s hour."""
        hour = int(at // 3600)
        value = self.cached.get(hour)
        if value is None:
            value = self.cached[hour] = self._factor(self.bucket(hour))
        return value

    def over(self, start: float, end: float) -> float:
        """The time-weighted mean factor of the hours [start, end] overlaps."""
        if end - start <= 0 or int(start // 3600) == int(end // 3600):
            return self.factor(end)
        total, at = 0.0, start
        while at < end:
            step = min(end, (int(at // 3600) + 1) * 3600.0) - at
            total += self.factor(at) * step
            at += step
        return total / (end - start)

    def _factor(self, bucket: int) -> float:
        known = [self.counts[b] for b in range(WEEK_HOURS) if self.known[b]]
        mean = sum(known) / len(known) if len(known) >= 24 else 0.0
        if mean <= 0:
            return 1.0
        if self.known[bucket]:
            usual = self.counts[bucket]
        else:
            same_hour = [self.counts[b] for b in range(bucket % 24, WEEK_HOURS, 24)
                         if self.known[b]]
            usual = sum(same_hour) / len(same_hour) if same_hour else mean
        return min(self.high, max(self.low, usual / mean))

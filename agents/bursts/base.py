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
the severity rose; when nothing new arrived for `quiet_s` of event time it is resolved: a last
alert with the same `dedup_key` and `evidence.resolved = true`, `evidence.resolved_at` =
last_seen + quiet_s (AlertData has no status field; the notifiers read `evidence.resolved`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, time, timezone
from typing import Any, ClassVar, Protocol
from zoneinfo import ZoneInfo

from streams.events import Account, AlertData, Severity, Target

VERSION = "burst-1"
DAY = 86_400.0
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


@dataclass(frozen=True)
class Trust:
    """Weight of one account's voice (reports) from its age and staff flag.

    Reviews-based accuracy (confirmed vs restored reports) is a follow-up: the weight would be
    multiplied by a per-reporter factor learnt from `safety.reviews.v1`.
    """

    staff: float = 3.0
    unknown_age: float = 0.5
    #: (max age in seconds, weight), youngest first; older than the last bound → 1.0
    by_age: tuple[tuple[float, float], ...] = ((DAY, 0.2), (7 * DAY, 0.5), (30 * DAY, 0.8))

    def weight(self, account: Account, at: float) -> float:
        if account.is_staff:
            return self.staff
        age = account_age(account, at)
        if age is None:
            return self.unknown_age
        for bound, weight in self.by_age:
            if age < bound:
                return weight
        return 1.0


@dataclass(frozen=True)
class ReportSurgeConfig:
    """`report_surge`: distinct reporters on one target within `window_s`, weighted by trust.

    `report_brigade` (mass false reporting): ≥ `brigade_min_reporters` distinct reporters of
    which ≥ `brigade_young_fraction` are younger than `young_age_s` — the swarm itself is the
    incident, whether or not its weight reaches a surge.
    """

    window_s: float = 600.0
    min_weight: float = 5.0
    min_weight_unstaffed: float = 3.0
    high_weight: float = 10.0
    young_age_s: float = 7 * DAY
    brigade_min_reporters: int = 8
    brigade_min_reporters_unstaffed: int = 6
    brigade_young_fraction: float = 0.7
    max_reporters: int = 1000  # per target, bounds memory under a huge swarm


@dataclass(frozen=True)
class ThreadRaidConfig:
    """`thread_raid`: posts in `window_s` ≥ max(floor, factor × the thread's baseline) from
    ≥ `min_authors` distinct authors, ≥ `young_fraction` of them younger than `young_age_s`.

    The baseline is an exponentially decayed post rate (time constant `baseline_tau_s`) that
    stops learning while the thread is under a raid.
    """

    window_s: float = 300.0
    floor: int = 20
    floor_unstaffed: int = 15
    factor: float = 5.0
    min_authors: int = 6
    young_age_s: float = 7 * DAY
    young_fraction: float = 0.5
    baseline_tau_s: float = 3600.0
    idle_s: float = DAY  # thread state dropped after this long without a post
    max_window_posts: int = 2000


@dataclass(frozen=True)
class SwarmConfig:
    """`new_account_swarm`: ≥ max(floor, factor × baseline) distinct accounts younger than
    `young_age_s` posting on one board within `window_s`."""

    window_s: float = 600.0
    floor: int = 8
    floor_unstaffed: int = 6
    factor: float = 4.0
    young_age_s: float = DAY
    baseline_tau_s: float = 6 * 3600.0
    idle_s: float = 2 * DAY
    max_accounts: int = 5000


@dataclass(frozen=True)
class TextBrigadeConfig:
    """`text_brigade`: near-duplicate bodies (MinHash LSH, Jaccard of word shingles ≥
    `similarity`) from ≥ `min_accounts` distinct accounts within `window_s` on one board."""

    window_s: float = 1800.0
    min_accounts: int = 4
    min_accounts_unstaffed: int = 3
    similarity: float = 0.6
    shingle: int = 3
    min_tokens: int = 6  # shorter bodies ("+1", "lol") are not evidence of coordination
    num_perm: int = 64
    excerpt_chars: int = 80
    max_window_posts: int = 50_000


@dataclass(frozen=True)
class ImageSprayConfig:
    """`image_spray`: PDQ hashes within `max_distance` bits from ≥ `min_accounts` distinct
    accounts within `window_s`."""

    window_s: float = 1800.0
    min_accounts: int = 4
    min_accounts_unstaffed: int = 3
    max_distance: int = 31
    max_window_images: int = 50_000


@dataclass(frozen=True)
class BurstConfig:
    """Every burst threshold; defaults until the policy file carries a `[burst]` section."""

    report_surge: ReportSurgeConfig = ReportSurgeConfig()
    thread_raid: ThreadRaidConfig = ThreadRaidConfig()
    swarm: SwarmConfig = SwarmConfig()
    text_brigade: TextBrigadeConfig = TextBrigadeConfig()
    image_spray: ImageSprayConfig = ImageSprayConfig()
    trust: Trust = Trust()
    staffed_hours: Covers = field(default_factory=StaffedHours)
    allowed_lateness_s: float = 30.0

    def staffed(self, at: float) -> bool:
        return self.staffed_hours.covers(utc(at))


# ------------------------------------------------------------------------------ the protocol


class BurstDetector(Protocol):
    """Pure windowed detector: events and a watermark in, alert updates out."""

    kinds: ClassVar[tuple[str, ...]]

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
    quiet_s: float
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

    def resolve_quiet(self, watermark: float) -> list[AlertData]:
        """Resolve every incident with no activity for `quiet_s` before `watermark`."""
        out = []
        for key in [k for k, i in self.open.items() if watermark - i.last_seen >= self.quiet_s]:
            incident = self.open.pop(key)
            resolved_at = incident.last_seen + self.quiet_s
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

"""`report_surge` and `report_brigade`: many distinct reporters on one target within a window.

Reports are keyed by `target_id` on `forum.reports.v1`, so every report of one target reaches
one partition and one detector: the state is partition-local, no repartition needed.

- Distinct reporters count once however often they report (their latest report is kept).
- Each reporter weighs by trust (`trust_weight`: staff 3, young accounts little), times how
  often moderators upheld their past reports (`ReporterAccuracy`), so habitual false reporters
  weigh little; and young reporters (staff aside) together add at most `young_max_share` of
  the threshold, so a swarm of fresh accounts, however large, cannot push a post over it on
  its own (it takes established members' reports too) …
- … and that swarm is itself an incident: `report_brigade` (mass false reporting) when
  enough distinct reporters, mostly young, pile onto one target.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from agents.bursts.accuracy import ReporterAccuracy
from agents.bursts.base import BurstConfig, Incidents, account_age, trust_weight
from streams.events import AlertData, ReportData, Target


@dataclass(slots=True)
class _Vote:
    at: float
    weight: float
    young: bool
    staff: bool
    report_id: str


@dataclass(slots=True)
class _TargetState:
    target: Target
    votes: dict[str, _Vote] = field(default_factory=dict)  # reporter id → latest report


class ReportSurgeDetector:
    """Pure detector over `ReportData` (see the module docstring)."""

    kinds: ClassVar[tuple[str, ...]] = ("report_surge", "report_brigade")

    def __init__(self, config: BurstConfig | None = None,
                 accuracy: ReporterAccuracy | None = None) -> None:
        self.config = config or BurstConfig()
        self.accuracy = accuracy if accuracy is not None else ReporterAccuracy()
        self.targets: dict[str, _TargetState] = {}
        self.surges = Incidents("report_surge")
        self.brigades = Incidents("report_brigade")
        self._swept = float("-inf")

    def observe(self, data: Any, at: float) -> list[AlertData]:
        if not isinstance(data, ReportData):
            return []
        c, trust = self.config.at(at).report_surge, self.config.trust
        key = f"{data.target_type}:{data.target_id}"
        state = self.targets.get(key)
        if state is None:
            target = Target(type=data.target_type, id=data.target_id,
                            post_id=data.target_id if data.target_type == "post" else None,
                            thread_id=data.thread_id)
            state = self.targets[key] = _TargetState(target)
        reporter = data.reporter
        age = account_age(reporter, at)
        voice = trust_weight(trust, reporter, at) * self.accuracy.factor(reporter.id, trust)
        self.accuracy.reported(data.target_id, reporter.id)
        previous = state.votes.pop(reporter.id, None)
        if previous is None and len(state.votes) >= c.max_reporters:
            state.votes.pop(next(iter(state.votes)))  # oldest out: bounded under any swarm
        state.votes[reporter.id] = _Vote(
            max(at, previous.at) if previous else at, voice,
            age is None or age < c.young_age_s, reporter.is_staff, data.report_id)

        since = at - c.window_s
        votes = [v for v in state.votes.values() if v.at > since]
        if not votes:
            return []
        young_weight = sum(v.weight for v in votes if v.young and not v.staff)
        young_cap = c.young_max_share * c.min_weight
        weight = round(sum(v.weight for v in votes if v.staff or not v.young)
                       + min(young_weight, young_cap), 3)
        young = sum(v.young for v in votes)
        staffed = self.config.staffed(at)
        first = min(v.at for v in votes)
        evidence: dict[str, Any] = {
            "reporters": len(votes),
            "weighted_reporters": weight,
            "young_reporters": young,
            "young_weight": round(young_weight, 3),
            "young_weight_cap": round(young_cap, 3),
            "staff_reporters": sum(v.staff for v in votes),
            "window_s": c.window_s,
            "staffed": staffed,
            "sample_report_ids": [v.report_id for v in votes[:10]],
        }
        out: list[AlertData] = []
        threshold = c.min_weight
        if weight >= threshold or self.surges.is_open(key):
            out += self.surges.touch(
                key, first_seen=first, last_seen=at, count=len(votes),
                severity="high" if weight >= c.high_weight else "medium",
                summary=f"{len(votes)} members reported {data.target_type} {data.target_id} "
                        f"within {c.window_s / 60:g} min (trust-weighted {weight:g})",
                target=state.target, evidence={**evidence, "threshold": threshold})
        brigade_min = c.brigade_min_reporters
        if (len(votes) >= brigade_min and young >= c.brigade_young_fraction * len(votes)) \
                or self.brigades.is_open(key):
            out += self.brigades.touch(
                key, first_seen=first, last_seen=at, count=len(votes), severity="medium",
                summary=f"{young} of {len(votes)} reporters of {data.target_type} "
                        f"{data.target_id} are young accounts: possible mass false reporting",
                target=state.target, evidence={**evidence, "threshold": brigade_min})
        return out

    def advance(self, watermark: float) -> list[AlertData]:
        window = self.config.thresholds.report_surge.window_s
        resolved = (self.surges.resolve_quiet(watermark, window)
                    + self.brigades.resolve_quiet(watermark, window))
        if watermark - self._swept < window / 4:
            return resolved
        self._swept, horizon = watermark, watermark - window
        for key in list(self.targets):
            state = self.targets[key]
            for reporter in [r for r, v in state.votes.items() if v.at <= horizon]:
                del state.votes[reporter]
            if not state.votes and not self.surges.is_open(key) \
                    and not self.brigades.is_open(key):
                del self.targets[key]
        return resolved

    def state_size(self) -> int:
        return len(self.targets) + sum(len(s.votes) for s in self.targets.values())

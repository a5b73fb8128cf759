"""The policy as data: small frozen value types, built once per policy file by `loader`.

Nothing here reads files or clocks. The one piece of logic is time arithmetic that depends only
on its argument (`StaffedHours.covers`), so a replay with the same event times gives the same
answers whatever the wall clock says.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property
from datetime import datetime, time, timezone
from typing import Any, ClassVar, Literal, Self
from zoneinfo import ZoneInfo

SEVERITIES: tuple[str, ...] = ("critical", "high", "medium", "low")  # most severe first
#: Takedown actions a rule may take, strongest first (`restore` is only ever a review's).
ACTIONS: tuple[str, ...] = ("block", "hide", "hold_for_review")
#: What the forum sees for each action: `hide` and `hold_for_review` keep content unpublished.
VERDICT_OF: dict[str, str] = {"block": "block", "hide": "hold", "hold_for_review": "hold"}
DESTINATIONS: tuple[str, ...] = ("alertmanager", "pagerduty", "webhook")
DAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: Time-boxed mitigations and the scope each one covers.
MITIGATION_SCOPES: dict[str, str] = {"restrict_thread": "thread",
                                     "hold_new_accounts_media": "board"}

Mode = Literal["enforce", "shadow"]
When = Literal["always", "staffed", "unstaffed"]


def most_severe(*severities: str) -> str:
    """The most severe of `severities` (critical > high > medium > low)."""
    return min(severities, key=SEVERITIES.index)


def strongest(*actions: str) -> str:
    """The strongest of `actions` (block > hide > hold_for_review)."""
    return min(actions, key=ACTIONS.index)


@dataclass(frozen=True)
class Thresholds:
    """When a scored or distance signal counts as a hit. None: the detector's own `status`."""

    min_score: float | None = None
    max_distance: int | None = None


@dataclass(frozen=True)
class Rule:
    """One policy rule: which signals it looks at, the threshold, and what it does on a hit.

    `severity` is a severity name, or `"bank"` to take the matched bank entry's severity.
    `unstaffed` thresholds replace `staffed` ones outside staffed hours (they are stricter:
    lower scores or larger distances count). A `shadow` rule never acts: decide emits what it
    would have done as a `shadow:<name>` signal.
    """

    name: str
    detectors: tuple[str, ...]
    action: str
    severity: str
    staffed: Thresholds = Thresholds()
    unstaffed: Thresholds = Thresholds()
    content_types: tuple[str, ...] = ()  # empty: any
    models: tuple[str, ...] = ()  # model names (`name` or `name@version`); empty: any
    banks: tuple[str, ...] = ()  # empty: any
    labels: tuple[str, ...] = ()  # empty: any
    alert: str | None = None  # alert kind raised on a hit (e.g. hash_match)
    alert_min_severity: str = "low"
    mode: Mode = "enforce"
    line: int = 0  # where the rule starts in its file, for messages

    def thresholds(self, staffed: bool) -> Thresholds:
        """The thresholds in force (`unstaffed` overrides field by field)."""
        if staffed:
            return self.staffed
        return Thresholds(
            min_score=self.unstaffed.min_score
            if self.unstaffed.min_score is not None else self.staffed.min_score,
            max_distance=self.unstaffed.max_distance
            if self.unstaffed.max_distance is not None else self.staffed.max_distance,
        )


@dataclass(frozen=True)
class StaffedHours:
    """When moderators are on duty, in a timezone; `end < start` spans midnight."""

    timezone: str = "UTC"
    days: tuple[str, ...] = DAYS
    start: time = time(0, 0)
    end: time = time(0, 0)  # start == end: around the clock
    always: bool = True

    def covers(self, at: datetime | None) -> bool:
        """Whether `at` (an event time) falls in staffed hours. Unknown time: not staffed
        (the stricter side)."""
        if self.always:
            return True
        if at is None:
            return False
        if at.tzinfo is None:
            at = at.replace(tzinfo=timezone.utc)
        local = at.astimezone(ZoneInfo(self.timezone))
        now, day = local.time().replace(tzinfo=None), DAYS[local.weekday()]
        if self.start < self.end:
            return day in self.days and self.start <= now < self.end
        # spans midnight: the early-morning part belongs to the previous day's shift
        if now >= self.start:
            return day in self.days
        previous = DAYS[(local.weekday() - 1) % 7]
        return now < self.end and previous in self.days


@dataclass(frozen=True)
class Mitigation:
    """A time-boxed mitigation decide starts when an alert of kind `on` arrives.

    `restrict_thread`: posts and images of accounts younger than `young_account_days` in the
    alert's thread are held for review; `hold_new_accounts_media`: their images on the alert's
    board are. It lifts itself `duration_minutes` after it started (or earlier from the
    console). A `shadow` mitigation holds nothing: decide emits `shadow:<name>` signals.
    """

    name: str
    on: tuple[str, ...]
    action: str
    duration_minutes: float
    young_account_days: float
    severity: str = "medium"
    mode: Mode = "enforce"

    @property
    def scope(self) -> str:
        """`thread` or `board`."""
        return MITIGATION_SCOPES[self.action]


@dataclass(frozen=True)
class Route:
    """Who gets alerts of some severities (and kinds), always or only (un)staffed."""

    destinations: tuple[str, ...]
    severities: tuple[str, ...] = SEVERITIES
    kinds: tuple[str, ...] = ()  # empty: any kind
    when: When = "always"


@dataclass(frozen=True)
class Paging:
    """Routes, and the escalation of critical alerts nobody acknowledged."""

    routes: tuple[Route, ...] = ()
    repage_after_minutes: float = 0  # 0: no re-page
    escalation: tuple[str, ...] = ("pagerduty",)
    alertmanager_ttl_minutes: float = 360  # endsAt of a firing alert unless resolved earlier


@dataclass(frozen=True)
class Policy:
    """A validated policy file. `version` goes into every decision (`policy_version`)."""

    version: str
    required: dict[str, tuple[str, ...]] = field(default_factory=dict)
    rules: tuple[Rule, ...] = ()
    staffed_hours: StaffedHours = StaffedHours()
    paging: Paging = Paging()
    unchecked_action: str = "hold_for_review"
    unchecked_severity: str = "medium"
    escalate_severity: str = "high"
    burst: BurstThresholds = field(default_factory=lambda: BurstThresholds())
    source: str = "<builtin>"
    mitigations: tuple[Mitigation, ...] = ()

    def __hash__(self) -> int:  # `required` is a dict; identity is enough for caches
        return id(self)

    @cached_property
    def _rules_by_detector(self) -> dict[str, tuple[Rule, ...]]:
        named = {d for rule in self.rules for d in rule.detectors if d != "*"}
        return {d: tuple(r for r in self.rules if d in r.detectors or "*" in r.detectors)
                for d in named}

    def rules_for(self, detector: str) -> tuple[Rule, ...]:
        """The rules that look at `detector`'s signals, in file order (built once: decide asks
        for every signal)."""
        found = self._rules_by_detector.get(detector)
        if found is None:
            found = tuple(r for r in self.rules if "*" in r.detectors)
        return found

    def route(self, kind: str, severity: str, at: datetime | None) -> tuple[str, ...]:
        """Destinations for an alert of `kind`/`severity` that happened at `at` (event time)."""
        staffed = self.staffed_hours.covers(at)
        found: list[str] = []
        for route in self.paging.routes:
            if severity not in route.severities or (route.kinds and kind not in route.kinds):
                continue
            if route.when == "staffed" and not staffed or route.when == "unstaffed" and staffed:
                continue
            found.extend(d for d in route.destinations if d not in found)
        return tuple(found)


# ================================================================== [burst]: burst detectors
# Thresholds of the burst detectors (agents/bursts, docs/burst.md), one class per kind. Kept in
# this block of its own, apart from the decision policy above. Durations are seconds here; the
# file writes them in minutes, hours or days (loader).

BURST_DAY = 86_400.0


@dataclass(frozen=True)
class BurstKind:
    """One kind's thresholds; `unstaffed` holds stricter overrides (field → value) that apply
    outside staffed hours, like a rule's `unstaffed` table.

    `STRICTER` names the fields an override may set and which way is stricter: "down" (fewer
    reports/posts/accounts needed) or "up" (a looser match counts). Windows and capacities are
    not overridable: the window state is shared by both sets of thresholds.
    """

    STRICTER: ClassVar[dict[str, str]] = {}
    unstaffed: tuple[tuple[str, float], ...] = ()

    def at_hours(self, staffed: bool) -> Self:
        """The thresholds in force, staffed or not (overrides applied field by field)."""
        if staffed or not self.unstaffed:
            return self
        return replace(self, unstaffed=(), **dict(self.unstaffed))


@dataclass(frozen=True)
class ReportSurgeThresholds(BurstKind):
    """`report_surge` (trust-weighted reporters ≥ `min_weight`) and `report_brigade` (≥
    `brigade_min_reporters` reporters, ≥ `brigade_young_fraction` younger than `young_age_s`)
    within `window_s` on one target. Reporters younger than `young_age_s` (staff aside) add at
    most `young_max_share` × `min_weight` to a surge's weight, however many they are: a swarm
    of fresh accounts cannot open a surge (and so hide a post) on its own."""

    STRICTER: ClassVar[dict[str, str]] = {
        "min_weight": "down", "high_weight": "down", "brigade_min_reporters": "down",
        "brigade_young_fraction": "down"}
    unstaffed: tuple[tuple[str, float], ...] = (("min_weight", 3.0),
                                                ("brigade_min_reporters", 6))
    window_s: float = 600.0
    min_weight: float = 5.0
    high_weight: float = 10.0
    young_age_s: float = 7 * BURST_DAY
    brigade_min_reporters: int = 8
    brigade_young_fraction: float = 0.7
    young_max_share: float = 0.4
    max_reporters: int = 1000  # per target, bounds memory under a huge swarm


@dataclass(frozen=True)
class ThreadRaidThresholds(BurstKind):
    """`thread_raid`: posts in `window_s` ≥ max(`floor`, `factor` × the thread's seasonal
    baseline) from ≥ `min_authors` authors, ≥ `young_fraction` younger than `young_age_s`."""

    STRICTER: ClassVar[dict[str, str]] = {
        "floor": "down", "factor": "down", "min_authors": "down", "young_fraction": "down"}
    unstaffed: tuple[tuple[str, float], ...] = (("floor", 7),)
    window_s: float = 300.0
    floor: int = 8  # tuned with bench/burst_eval.py (docs/burst.md#detection-delay)
    factor: float = 5.0
    min_authors: int = 6
    young_age_s: float = 7 * BURST_DAY
    young_fraction: float = 0.5
    baseline_tau_s: float = 3600.0
    idle_s: float = BURST_DAY  # thread state dropped after this long without a post
    max_window_posts: int = 2000


@dataclass(frozen=True)
class SwarmThresholds(BurstKind):
    """`new_account_swarm`: ≥ max(`floor`, `factor` × the board's seasonal baseline) accounts
    younger than `young_age_s` posting on one board within `window_s`; or sooner, the latest
    k ≥ `scan_min_accounts` of them arriving within a span whose chance under the board's
    usual rate at that hour of the week (never below `prior_rate`, per second) is ≤ `scan_p`
    (agents/bursts/significance.py)."""

    STRICTER: ClassVar[dict[str, str]] = {"floor": "down", "factor": "down",
                                          "scan_min_accounts": "down", "scan_p": "up"}
    unstaffed: tuple[tuple[str, float], ...] = (("floor", 5), ("scan_p", 3e-4))
    window_s: float = 600.0
    floor: int = 6
    factor: float = 4.0
    scan_min_accounts: int = 3
    scan_p: float = 1e-4
    prior_rate: float = 0.5 / 3600  # young accounts per second on a board, at least
    young_age_s: float = BURST_DAY
    baseline_tau_s: float = 6 * 3600.0
    idle_s: float = 2 * BURST_DAY
    max_accounts: int = 5000


@dataclass(frozen=True)
class TextBrigadeThresholds(BurstKind):
    """`text_brigade`: bodies with Jaccard ≥ `similarity` (MinHash LSH over word shingles) from
    ≥ `min_accounts` accounts on one board within `window_s`. A reload that changes the index
    parameters (`similarity`, `shingle`, `num_perm`) re-indexes the window's posts."""

    STRICTER: ClassVar[dict[str, str]] = {"min_accounts": "down"}
    unstaffed: tuple[tuple[str, float], ...] = (("min_accounts", 3),)
    window_s: float = 1800.0
    min_accounts: int = 4
    similarity: float = 0.5  # 0.6 missed 4-account brigades with small edits (docs/burst.md)
    shingle: int = 3
    min_tokens: int = 6  # shorter bodies ("+1", "lol") are not evidence of coordination
    num_perm: int = 64
    excerpt_chars: int = 80
    max_window_posts: int = 50_000


@dataclass(frozen=True)
class ImageSprayThresholds(BurstKind):
    """`image_spray`: PDQ within `max_distance` bits from ≥ `min_accounts` accounts within
    `window_s`."""

    STRICTER: ClassVar[dict[str, str]] = {"min_accounts": "down", "max_distance": "up"}
    unstaffed: tuple[tuple[str, float], ...] = (("min_accounts", 3),)
    window_s: float = 1800.0
    min_accounts: int = 4
    max_distance: int = 31
    max_window_images: int = 50_000


@dataclass(frozen=True)
class TrustWeights:
    """A reporter's weight: staff, else by account age (`by_age`: (max age s, weight), youngest
    first; older → `older`), times an accuracy factor from moderators' reviews of what they
    reported: the mean of Beta(`prior_confirmed` + confirmed, `prior_restored` + restored)
    over the prior's mean, capped at `max_accuracy_factor`."""

    staff: float = 3.0
    unknown_age: float = 0.5
    by_age: tuple[tuple[float, float], ...] = ((BURST_DAY, 0.2), (7 * BURST_DAY, 0.5),
                                               (30 * BURST_DAY, 0.8))
    older: float = 1.0
    prior_confirmed: float = 2.0
    prior_restored: float = 2.0
    max_accuracy_factor: float = 1.5


@dataclass(frozen=True)
class BurstThresholds:
    """The `[burst]` section: every kind's thresholds, trust weights, allowed lateness."""

    report_surge: ReportSurgeThresholds = ReportSurgeThresholds()
    thread_raid: ThreadRaidThresholds = ThreadRaidThresholds()
    new_account_swarm: SwarmThresholds = SwarmThresholds()
    text_brigade: TextBrigadeThresholds = TextBrigadeThresholds()
    image_spray: ImageSprayThresholds = ImageSprayThresholds()
    trust: TrustWeights = TrustWeights()
    lateness_s: float = 30.0  # events older than the watermark by more are dropped

    KINDS: ClassVar[tuple[str, ...]] = ("report_surge", "thread_raid", "new_account_swarm",
                                        "text_brigade", "image_spray")

    def at_hours(self, staffed: bool) -> BurstThresholds:
        """Every kind's thresholds in force, staffed or not."""
        if staffed:
            return self
        kinds: dict[str, Any] = {k: getattr(self, k).at_hours(False) for k in self.KINDS}
        return replace(self, **kinds)

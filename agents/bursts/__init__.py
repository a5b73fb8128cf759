"""Burst and brigading detectors: pure, windowed on event time, bounded state (DESIGN §6).

Read `base.py` first (protocol, config, incident lifecycle, seasonal baselines); each detector
is one short class; the thresholds are the policy's `[burst]` section
(`agents.policy.model.BurstThresholds`), reporter accuracy is `accuracy.py`. `Watermarked`
runs a group of detectors over one ordered input (one partition): it keeps the watermark (max
event time − allowed lateness) and calls `advance` when it moves, so the agent and the
evaluation harness drive detectors the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agents.bursts.accuracy import ReporterAccuracy
from agents.bursts.base import (
    VERSION,
    BurstConfig,
    BurstDetector,
    Incidents,
    StaffedHours,
    WeeklyProfile,
    trust_weight,
)
from agents.bursts.duplicates import ImageSprayDetector, TextBrigadeDetector, TextSignatures
from agents.bursts.report_surge import ReportSurgeDetector
from agents.bursts.thread_raid import NewAccountSwarmDetector, ThreadRaidDetector
from streams.events import AlertData

KINDS: tuple[str, ...] = (
    "report_surge", "report_brigade", "thread_raid", "new_account_swarm", "text_brigade",
    "image_spray",
)


class Watermarked:
    """Detectors over one ordered input, with its watermark; pure like the detectors.

    `advance` runs at most once per `tick_s` of watermark progress: expiry scans every key, so
    doing it per event would cost O(keys) per event.
    """

    def __init__(self, detectors: Sequence[BurstDetector], config: BurstConfig,
                 tick_s: float = 5.0) -> None:
        self.detectors = list(detectors)
        self.lateness = config.allowed_lateness_s
        self.tick_s = tick_s
        self.max_time: float | None = None
        self.advanced_to: float | None = None

    @property
    def watermark(self) -> float | None:
        return None if self.max_time is None else self.max_time - self.lateness

    def observe(self, data: Any, at: float) -> list[AlertData]:
        """One event at event time `at`; too-late events (before the watermark) are dropped
        from the windows, not the alert path: their windows already closed."""
        watermark = self.watermark
        if watermark is not None and at < watermark:
            return []
        out = [a for d in self.detectors for a in d.observe(data, at)]
        self.max_time = at if self.max_time is None else max(self.max_time, at)
        return out + self.advance()

    def advance(self, force: bool = False) -> list[AlertData]:
        watermark = self.watermark
        if watermark is None:
            return []
        recent = self.advanced_to is not None and watermark - self.advanced_to < self.tick_s
        if not force and recent:
            return []
        self.advanced_to = watermark
        return [a for d in self.detectors for a in d.advance(watermark)]

    def reconfigure(self, config: BurstConfig) -> None:
        """New thresholds (a policy reload): windows, baselines and open incidents are kept."""
        self.lateness = config.allowed_lateness_s
        for detector in self.detectors:
            detector.config = config

    def state_size(self) -> int:
        return sum(d.state_size() for d in self.detectors)


__all__ = [
    "KINDS",
    "VERSION",
    "BurstConfig",
    "BurstDetector",
    "ImageSprayDetector",
    "Incidents",
    "NewAccountSwarmDetector",
    "ReportSurgeDetector",
    "ReporterAccuracy",
    "StaffedHours",
    "TextBrigadeDetector",
    "TextSignatures",
    "ThreadRaidDetector",
    "Watermarked",
    "WeeklyProfile",
    "trust_weight",
]

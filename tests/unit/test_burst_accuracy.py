"""Reporter accuracy from moderators' reviews, folded into the report weight (bounded)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from agents.bursts import BurstConfig, ReportSurgeDetector, ReporterAccuracy, Watermarked
from agents.policy.model import TrustWeights
from streams.events import Account, ReportData

NOON = datetime(2025, 2, 4, 14, 0, tzinfo=timezone.utc).timestamp()
OLD = datetime(2020, 1, 1, tzinfo=timezone.utc)
WEIGHTS = TrustWeights()  # Beta(2, 2) prior, factor capped at 1.5


def report(target: str, reporter: str, at: float) -> tuple[ReportData, float]:
    return ReportData(report_id=f"r-{target}-{reporter}", target_type="post", target_id=target,
                      reporter=Account(id=reporter, created_at=OLD)), at


def history(accuracy: ReporterAccuracy, reporters: list[str], outcome: str, times: int,
            tag: str = "old") -> None:
    """`reporters` reported `times` earlier posts together; moderators ruled `outcome`."""
    for n in range(times):
        for reporter in reporters:
            accuracy.reported(f"{tag}{n}", reporter)
        assert accuracy.reviewed(f"{tag}{n}", outcome) == len(reporters)


def surges(accuracy: ReporterAccuracy, reporters: list[str]) -> list[str]:
    config = BurstConfig()
    runner = Watermarked([ReportSurgeDetector(config, accuracy)], config)
    return [a.kind for i, who in enumerate(reporters)
            for a in runner.observe(*report("victim", who, NOON + i))]


def test_unreviewed_reporters_weigh_by_age_only() -> None:
    accuracy = ReporterAccuracy()
    assert accuracy.factor("nobody", WEIGHTS) == 1.0
    assert surges(accuracy, [f"m{i}" for i in range(4)]) == []  # 4 × 1.0 < 5
    assert surges(accuracy, [f"m{i}" for i in range(5)]) == ["report_surge"]


def test_habitual_false_reporters_cannot_surge() -> None:
    accuracy = ReporterAccuracy()
    crew = [f"crew{i}" for i in range(6)]
    history(accuracy, crew, "restore", 5)
    assert accuracy.get("crew0") == (0, 5)
    assert accuracy.factor("crew0", WEIGHTS) == pytest.approx(2 / 9 / 0.5)
    assert surges(accuracy, crew) == []  # 6 × 0.44 < 5


def test_reliable_reporters_surge_sooner() -> None:
    accuracy = ReporterAccuracy()
    trusted = [f"t{i}" for i in range(4)]
    history(accuracy, trusted, "confirm", 3)
    assert accuracy.factor("t0", WEIGHTS) == pytest.approx(5 / 7 / 0.5)  # 1.43
    assert surges(accuracy, trusted) == ["report_surge"]  # 4 × 1.43 ≥ 5
    history(accuracy, trusted, "confirm", 50, tag="more")
    assert accuracy.factor("t0", WEIGHTS) == 1.5  # capped


def test_redelivered_and_reversed_reviews_count_once() -> None:
    accuracy = ReporterAccuracy()
    accuracy.reported("p1", "a")
    assert accuracy.reviewed("p1", "confirm") == 1
    assert accuracy.reviewed("p1", "confirm") == 0  # redelivered
    assert accuracy.get("a") == (1, 0)
    assert accuracy.reviewed("p1", "restore") == 1  # a moderator reversed it
    assert accuracy.get("a") == (0, 1)
    assert accuracy.reviewed("p1", "escalate") == 0
    assert accuracy.reviewed("never-reported", "restore") == 0


def test_state_is_bounded() -> None:
    accuracy = ReporterAccuracy(max_targets=10, max_per_target=3, max_reporters=5)
    for n in range(100):
        for r in range(10):
            accuracy.reported(f"p{n}", f"r{n}-{r}")
        accuracy.reviewed(f"p{n}", "restore")
    assert len(accuracy.targets) == 10 and len(accuracy.counts) == 5
    assert all(len(reporters) == 3 for reporters, _ in accuracy.targets.values())
    assert accuracy.get("r99-0") == (0, 1) and accuracy.get("r0-0") == (0, 0)  # oldest out

"""The policy's `[burst]` section: defaults, unstaffed overrides, errors with lines, reload."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from agents.bursts import BurstConfig, ReportSurgeDetector, ThreadRaidDetector, Watermarked
from agents.policy import PolicyError, load_default_policy, parse_policy
from agents.policy.model import BurstThresholds, StaffedHours
from streams.events import Account, ReportData

NOON = datetime(2025, 2, 4, 14, 0, tzinfo=timezone.utc).timestamp()
NIGHT = datetime(2025, 2, 4, 2, 0, tzinfo=timezone.utc).timestamp()
OLD = datetime(2020, 1, 1, tzinfo=timezone.utc)
HEAD = 'version = "t"\n[staffed_hours]\nstart = "08:00"\nend = "22:00"\n'


def report(i: int, at: float) -> tuple[ReportData, float]:
    return ReportData(report_id=f"r{i}", target_type="post", target_id="victim",
                      reporter=Account(id=f"m{i}", created_at=OLD)), at


def surge_kinds(config: BurstConfig, n: int, at: float) -> list[str]:
    runner = Watermarked([ReportSurgeDetector(config)], config)
    return [a.kind for i in range(n) for a in runner.observe(*report(i, at + i))]


def test_default_policy_carries_every_burst_threshold() -> None:
    assert load_default_policy().burst == BurstThresholds()


def test_thresholds_and_unstaffed_overrides_come_from_the_file() -> None:
    policy = parse_policy(HEAD + "[burst.report_surge]\nmin_weight = 2\n"
                                 "unstaffed = { min_weight = 1 }\n")
    config = BurstConfig.from_policy(policy)
    assert config.at(NOON).report_surge.min_weight == 2.0
    assert config.at(NIGHT).report_surge.min_weight == 1.0
    assert surge_kinds(config, 2, NOON) == ["report_surge"]  # 2 members, not the default 5
    assert surge_kinds(config, 1, NIGHT) == ["report_surge"]
    assert surge_kinds(BurstConfig.from_policy(parse_policy(HEAD)), 2, NOON) == []


def test_a_kind_table_without_unstaffed_has_no_night_overrides() -> None:
    policy = parse_policy(HEAD + "[burst.thread_raid]\nfloor = 10\n")
    assert policy.burst.thread_raid.at_hours(False).floor == 10
    assert policy.burst.report_surge == BurstThresholds().report_surge  # untouched kinds
    assert parse_policy(HEAD).burst.thread_raid.at_hours(False).floor == 7


def test_units_are_converted() -> None:
    burst = parse_policy(HEAD + "[burst]\nlateness_seconds = 5\n[burst.new_account_swarm]\n"
                                "window_minutes = 2\nyoung_age_hours = 12\nbaseline_hours = 3\n"
                                "[burst.trust]\nage_weights = [[2, 0.1]]\n").burst
    assert (burst.new_account_swarm.window_s, burst.new_account_swarm.young_age_s,
            burst.new_account_swarm.baseline_tau_s) == (120.0, 43_200.0, 10_800.0)
    assert burst.trust.by_age == ((172_800.0, 0.1),) and burst.lateness_s == 5.0
    swarm = parse_policy(HEAD + "[burst.new_account_swarm]\nprior_per_hour = 2\n"
                                "unstaffed = { scan_p = 0.01 }\n").burst.new_account_swarm
    assert swarm.prior_rate == pytest.approx(2 / 3600)
    assert swarm.at_hours(False).scan_p == 0.01 and swarm.scan_p == 1e-4


@pytest.mark.parametrize(("text", "line", "key"), [
    ("[burst.thread_raid]\nfloor = 12\nunstaffed = { floor = 14 }\n", 7,
     "burst.thread_raid.unstaffed.floor"),
    ("[burst.image_spray]\nmax_distance = 31\nunstaffed = { max_distance = 20 }\n", 7,
     "burst.image_spray.unstaffed.max_distance"),
    ("[burst.image_spray]\nunstaffed = { window_minutes = 5 }\n", 6,
     "burst.image_spray.unstaffed.window_minutes"),
    ("[burst.new_account_swarm]\nscan_p = 1e-3\nunstaffed = { scan_p = 1e-4 }\n", 7,
     "burst.new_account_swarm.unstaffed.scan_p"),
    ("[burst.text_brigade]\nmin_acounts = 3\n", 6, "burst.text_brigade.min_acounts"),
    ("[burst]\nlateness_seconds = -1\n", 6, "burst.lateness_seconds"),
    ("[burst.report_surge]\nbrigade_min_reporters = 2.5\n", 6,
     "burst.report_surge.brigade_min_reporters"),
    ("[burst.trust]\nage_weights = [[7, 0.5], [1, 0.2]]\n", 6, "burst.trust.age_weights"),
    ("[burst.raids]\nfloor = 3\n", 5, "burst.raids"),
])
def test_errors_name_the_line_and_key(text: str, line: int, key: str) -> None:
    with pytest.raises(PolicyError) as error:
        parse_policy(HEAD + text, source="p.toml")
    assert (error.value.line, error.value.key) == (line, key)


def test_reconfigure_applies_new_thresholds_and_keeps_the_windows() -> None:
    config = BurstConfig(staffed_hours=StaffedHours())  # around the clock
    runner = Watermarked([ReportSurgeDetector(config), ThreadRaidDetector(config)], config)
    assert [a for i in range(3) for a in runner.observe(*report(i, NOON + i))] == []
    lower = parse_policy('version = "t2"\n[burst.report_surge]\nmin_weight = 4\n')
    runner.reconfigure(BurstConfig.from_policy(lower))
    # the three earlier reporters are still in the window: the 4th crosses the new threshold
    assert [a.kind for a in runner.observe(*report(3, NOON + 3))] == ["report_surge"]
    assert all(d.config.thresholds.report_surge.min_weight == 4 for d in runner.detectors)

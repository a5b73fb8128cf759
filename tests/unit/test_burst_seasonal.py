"""Hour-of-week seasonality: a busy evening is not a swarm, a quiet night is not ignored."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

from agents.bursts import BurstConfig, NewAccountSwarmDetector, Watermarked, WeeklyProfile
from agents.policy.model import BurstThresholds
from streams.events import Account, AlertData, PostData

MONDAY = datetime(2025, 2, 3, tzinfo=timezone.utc).timestamp()
HOUR = 3600.0
#: young accounts posting per hour, by hour of day: quiet night, steady day, busy evening
PER_HOUR = [3] * 8 + [18] * 11 + [150] * 3 + [3] * 2


def newcomer(n: int, at: float, board: str = "b1") -> tuple[PostData, float]:
    created = datetime.fromtimestamp(at, timezone.utc) - timedelta(hours=2)
    return PostData(post_id=f"p{n}", thread_id=f"t{n % 50}", board=board,
                    author=Account(id=f"new{n}", created_at=created), body="hello"), at


def ordinary_days(days: int) -> list[tuple[PostData, float]]:
    """Every day the same: newcomers spread evenly over each hour, PER_HOUR of them."""
    out = []
    for hour in range(days * 24):
        count = PER_HOUR[hour % 24]
        out += [newcomer(len(out) + i, MONDAY + hour * HOUR + i * HOUR / count)
                for i in range(count)]
    return out


def feed(runner: Watermarked, events: list[tuple[PostData, float]]) -> list[AlertData]:
    return [a for data, at in events for a in runner.observe(data, at)]


def test_profile_learns_the_hour_of_week() -> None:
    profile = WeeklyProfile()
    assert profile.factor(MONDAY) == 1.0
    for _, at in ordinary_days(15):
        profile.add(at)
    evening, night = MONDAY + 15 * 86_400 + 20 * HOUR, MONDAY + 15 * 86_400 + 3 * HOUR
    assert profile.factor(evening) > 3 > 0.25 > profile.factor(night)
    assert profile.bucket(int(MONDAY // HOUR)) == 0  # Monday 00:00 UTC is the first hour


def test_a_busy_evening_is_not_a_swarm() -> None:
    config = BurstConfig()
    runner = Watermarked([NewAccountSwarmDetector(config)], config)
    days = ordinary_days(21)
    third_week = MONDAY + 14 * 86_400
    feed(runner, [e for e in days if e[1] < third_week])  # two weeks to learn the week's shape
    alerts = feed(runner, [e for e in days if e[1] >= third_week])
    # the evenings bring 25 newcomers per 10 min (the floor is 6): usual, so no alert
    assert alerts == []


def test_a_quiet_night_is_not_ignored() -> None:
    config = BurstConfig()
    runner = Watermarked([NewAccountSwarmDetector(config)], config)
    days = ordinary_days(17)
    night = MONDAY + 15 * 86_400 + 26 * HOUR  # 02:00, a few hours after a busy evening
    before = [e for e in days if e[1] < night]
    feed(runner, before)
    swarm = [newcomer(900_000 + i, night + i * 30, "b1") for i in range(10)]
    alerts = feed(runner, sorted([*swarm, *(e for e in days if e[1] >= night)],
                                 key=lambda e: e[1]))
    opened = [a for a in alerts if a.kind == "new_account_swarm" and a.alert_id.endswith("-u0")]
    assert len(opened) == 1 and opened[0].evidence["season_factor"] < 1


# ---------------------------------------------------------------- the scan test (significance)
#: a board where newcomers are rare at night, steady by day and many in the evening
QUIET_NIGHTS = [1] * 8 + [4] * 11 + [12] * 3 + [1] * 2


def board_days(days: int, per_hour: list[int], board: str) -> list[tuple[PostData, float]]:
    out = []
    for hour in range(days * 24):
        count = per_hour[hour % 24]
        out += [newcomer(len(out) + i, MONDAY + hour * HOUR + (i + 0.5) * HOUR / count, board)
                for i in range(count)]
    return out


def three_newcomers(at: float, board: str) -> list[tuple[PostData, float]]:
    return [newcomer(800_000 + i, at + i * 30, board) for i in range(3)]


def scan_run(config: BurstConfig, at: float) -> list[AlertData]:
    """Two weeks of a QUIET_NIGHTS board, then three newcomers 30 s apart at `at`."""
    runner = Watermarked([NewAccountSwarmDetector(config)], config)
    days = board_days(16, QUIET_NIGHTS, "b2")
    feed(runner, [e for e in days if e[1] < at])
    later = [e for e in days if e[1] >= at]
    return feed(runner, sorted([*three_newcomers(at, "b2"), *later], key=lambda e: e[1]))


def opened(alerts: list[AlertData]) -> list[AlertData]:
    return [a for a in alerts if a.kind == "new_account_swarm" and a.alert_id.endswith("-u0")]


def test_three_newcomers_in_two_minutes_on_a_quiet_night_open_a_swarm() -> None:
    night = MONDAY + 14 * 86_400 + 3 * HOUR + 10 * 60  # 03:10, after two weeks of history
    first = opened(scan_run(BurstConfig(), night))
    assert len(first) == 1
    assert first[0].evidence["scan_accounts"] == 3 and first[0].evidence["scan_p"] <= 3e-4
    assert first[0].last_seen.timestamp() == night + 60  # at the third, not at the floor (5)
    # the floor alone (the scan off) waits for 5 accounts, which never come
    floor_only = BurstConfig(replace_swarm(scan_p=0.0, unstaffed=(("floor", 5),)))
    assert opened(scan_run(floor_only, night)) == []


def test_the_same_three_on_a_busy_evening_are_usual() -> None:
    evening = MONDAY + 14 * 86_400 + 20 * HOUR + 10 * 60  # 20:10, 12 newcomers an hour
    assert opened(scan_run(BurstConfig(), evening)) == []


def replace_swarm(**fields: object) -> BurstThresholds:
    base = BurstThresholds()
    return dataclasses.replace(base, new_account_swarm=dataclasses.replace(
        base.new_account_swarm, **fields))

"""Hour-of-week seasonality: a busy evening is not a swarm, a quiet night is not ignored."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from agents.bursts import BurstConfig, NewAccountSwarmDetector, Watermarked, WeeklyProfile
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

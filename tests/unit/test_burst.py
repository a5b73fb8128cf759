"""Burst detectors, pure: attacks fire once per incident, normal traffic does not, replays agree,
state expires."""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

import pytest

from agents.bursts import (
    BurstConfig,
    ImageSprayDetector,
    NewAccountSwarmDetector,
    ReportSurgeDetector,
    TextBrigadeDetector,
    TextSignatures,
    ThreadRaidDetector,
    Watermarked,
    trust_weight,
)
from agents.bursts.base import StaffedHours, utc
from agents.policy.model import BurstThresholds, TrustWeights
from streams.events import Account, AlertData, PostData, ReportData, SignalData

NOON = datetime(2025, 2, 4, 14, 0, tzinfo=timezone.utc).timestamp()  # staffed (UTC 08–22)
NIGHT = datetime(2025, 2, 4, 2, 0, tzinfo=timezone.utc).timestamp()
OLD = datetime(2020, 1, 1, tzinfo=timezone.utc)
Event = tuple[Any, float]
WORDS = ("the game last night was great but the referee missed a clear foul in the box and "
         "everyone on the bench knew it so what do you think about next season trades coach "
         "defence striker keeper budget tickets stadium weather travel food music").split()


def chatter(i: int) -> str:
    """A varied ordinary body (deterministic): ten words picked by `i`."""
    return " ".join(random.Random(i).choices(WORDS, k=12))


def young(at: float, hours: float = 2) -> datetime:
    return datetime.fromtimestamp(at - hours * 3600, timezone.utc)


def rep(i: int, target: str, reporter: str, at: float, created: datetime = OLD,
        staff: bool = False) -> Event:
    return ReportData(report_id=f"r{i}-{target}", target_type="post", target_id=target,
                      reporter=Account(id=reporter, created_at=created, is_staff=staff)), at


def post(i: int, thread: str, author: str, at: float, created: datetime | None = OLD,
         body: str = "", board: str = "b1") -> Event:
    return PostData(post_id=f"p{i}-{thread}", thread_id=thread, board=board,
                    author=Account(id=author, created_at=created),
                    body=body or chatter(i)), at


def pdq(i: int, author: str, hex_hash: str, at: float) -> Event:
    return SignalData(detector="pdq", detector_version="pdq-1", content_type="image",
                      content_id=f"img{i}", author_id=author, thread_id=f"t{i % 7}",
                      evidence={"pdq": hex_hash}), at


def run(make: Callable[[BurstConfig], Any], events: Iterable[Event],
        config: BurstConfig | None = None) -> tuple[list[AlertData], Watermarked]:
    config = config or BurstConfig()
    runner = Watermarked([make(config)], config)
    alerts = [a for data, at in events for a in runner.observe(data, at)]
    return alerts, runner


def background(start: float, hours: float = 3) -> list[Event]:
    """Ordinary traffic: old accounts, a post a minute per thread, a report now and then."""
    out: list[Event] = []
    for minute in range(int(hours * 60)):
        at = start + minute * 60
        for t in range(5):
            out.append(post(minute * 10 + t, f"t{t}", f"old{(minute + t) % 40}", at + t))
        if minute % 7 == 0:
            out.append(rep(minute, f"p{minute}", f"old{minute % 40}", at))
    return out


def flush(start: float) -> list[Event]:
    """A late event that moves the watermark far past everything before it."""
    return [rep(999_999, "flush", "old-flusher", start + 4 * 3600)]


def one_incident(alerts: list[AlertData], kind: str) -> list[AlertData]:
    mine = [a for a in alerts if a.kind == kind]
    assert len({a.dedup_key for a in mine}) == 1, [a.dedup_key for a in mine]
    assert len({a.alert_id for a in mine}) == len(mine)  # each update its own id
    counts = [a.count for a in mine]
    assert counts == sorted(counts)
    assert mine[-1].evidence.get("resolved") is True
    assert sum(bool(a.evidence.get("resolved")) for a in mine) == 1
    return mine


# ------------------------------------------------------------------------------ report_surge


def surge(start: float, n: int = 8) -> list[Event]:
    return [rep(i, "victim", f"reporter{i}", start + i * 7) for i in range(n)]


def test_report_surge_fires_once_with_updates_under_one_key() -> None:
    alerts, _ = run(ReportSurgeDetector, [*surge(NOON, 12), *flush(NOON)])
    mine = one_incident(alerts, "report_surge")
    assert mine[0].count == 5  # staffed threshold: weight 5
    assert mine[0].dedup_key == "report_surge:post:victim:20250204T140000Z"
    assert mine[-1].count == 12 and mine[-1].target and mine[-1].target.id == "victim"
    assert mine[-1].evidence["resolved_at"].startswith("2025-02-04T14:11:17")


def test_repeat_reporter_counts_once_and_normal_traffic_is_quiet() -> None:
    repeats = [rep(i, "victim", "same-member", NOON + i) for i in range(30)]
    alerts, _ = run(ReportSurgeDetector, [*background(NOON), *repeats, *flush(NOON)])
    assert alerts == []


def test_unstaffed_hours_are_stricter() -> None:
    night, _ = run(ReportSurgeDetector, surge(NIGHT, 3))
    day, _ = run(ReportSurgeDetector, surge(NOON, 3))
    assert [a.kind for a in night] == ["report_surge"] and day == []


def test_young_swarm_cannot_surge_but_is_a_report_brigade() -> None:
    swarm = [rep(i, "victim", f"fresh{i}", NOON + i, created=young(NOON)) for i in range(10)]
    alerts, _ = run(ReportSurgeDetector, [*swarm, *flush(NOON)])
    assert not [a for a in alerts if a.kind == "report_surge"]  # 10 × 0.2 = 2 < 5
    one_incident(alerts, "report_brigade")


def test_a_large_fresh_swarm_cannot_surge_but_members_with_it_can() -> None:
    """Mass false reporting (the harness's 15 and 30 accounts, 10 min to 3 days old): young
    reporters add at most 0.4 × 5 = 2 to the weight, so no number of them opens a surge; three
    established members on top of them do (3 + 2 ≥ 5), fewer do not."""
    def fresh(n: int) -> list[Event]:
        return [rep(i, "victim", f"fresh{i}", NOON + i,
                    created=young(NOON, hours=1 + (i * 7) % 70)) for i in range(n)]

    members = [rep(100 + i, "victim", f"member{i}", NOON + 200 + i) for i in range(3)]
    for size in (15, 30, 200):
        alerts, _ = run(ReportSurgeDetector, [*fresh(size), *flush(NOON)])
        assert [a for a in alerts if a.kind == "report_surge"] == []
        brigade = one_incident(alerts, "report_brigade")
        assert brigade[0].evidence["young_weight"] > brigade[0].evidence["young_weight_cap"] == 2
    alerts, _ = run(ReportSurgeDetector, [*fresh(30), *members[:2], *flush(NOON)])
    assert [a for a in alerts if a.kind == "report_surge"] == []  # 2 + 2 < 5
    alerts, _ = run(ReportSurgeDetector, [*fresh(30), *members, *flush(NOON)])
    opened = one_incident(alerts, "report_surge")[0]
    assert opened.evidence["weighted_reporters"] == 5.0 and opened.count == 33


def test_staff_weigh_more() -> None:
    assert trust_weight(TrustWeights(), Account(id="s", is_staff=True), NOON) == 3.0
    alerts, _ = run(ReportSurgeDetector, [rep(1, "v", "mod", NOON, staff=True),
                                          rep(2, "v", "member", NOON + 1),
                                          rep(3, "v", "member2", NOON + 2)])
    assert [a.kind for a in alerts] == ["report_surge"]


# ------------------------------------------------------------------------------ thread_raid


def raid(start: float, posts: int = 60, authors: int = 15) -> list[Event]:
    return [post(1000 + i, "t0", f"raider{i % authors}", start + i * 4, created=young(start))
            for i in range(posts)]


def test_thread_raid_fires_once_and_busy_old_thread_does_not() -> None:
    traffic = background(NOON)
    alerts, _ = run(ThreadRaidDetector, [*traffic, *raid(NOON + 3 * 3600), *flush(NOON)])
    mine = one_incident(alerts, "thread_raid")
    assert mine[0].target and mine[0].target.id == "t0"
    # the same burst from established members is a lively thread, not a raid
    hot = [post(2000 + i, "t0", f"old{i % 15}", NOON + 3 * 3600 + i * 4) for i in range(60)]
    alerts, _ = run(ThreadRaidDetector, [*traffic, *hot, *flush(NOON)])
    assert alerts == []


def test_authors_of_unknown_age_are_not_young_so_an_anonymous_burst_is_no_raid() -> None:
    """Issue 9: the load bench's posts carry no `author.created_at`. Counted as young, they made
    every thread with 7 posts from 6 authors in 5 minutes a raid (5 142 alert events in 20
    minutes of benign traffic). Unknown age is no evidence of youth, as for new_account_swarm:
    only authors known to be younger than `young_age_days` count."""
    def burst(created: Callable[[int], datetime | None]) -> list[Event]:
        return [post(8000 + i, "t-new", f"a{i}", NIGHT + i * 10, created=created(i))
                for i in range(30)]

    anonymous, _ = run(ThreadRaidDetector, [*burst(lambda i: None), *flush(NIGHT)])
    assert anonymous == []
    four_young_in_ten = burst(lambda i: young(NIGHT) if i % 10 >= 6 else None)
    alerts, _ = run(ThreadRaidDetector, [*four_young_in_ten, *flush(NIGHT)])
    assert alerts == []  # 40 % of the authors known to be young: under the 50 %
    half_young = burst(lambda i: young(NIGHT) if i % 2 else None)
    alerts, _ = run(ThreadRaidDetector, [*half_young, *flush(NIGHT)])
    assert one_incident(alerts, "thread_raid")[0].evidence["young_authors"] >= 3


def test_a_long_raid_is_one_incident_whose_updates_grow_logarithmically() -> None:
    """Six hours at a post every 4 s (5 400 posts): one incident; an update only when the count
    grew by half (or the severity rose): 12 updates from 37 posts to 5 402, not one per post —
    the pager hears of a long raid often in its first minutes, then rarer and rarer."""
    start = NOON + 3 * 3600
    long_raid = [post(10_000 + i, "t0", f"raider{i % 40}", start + 4 * i, created=young(start))
                 for i in range(5400)]
    alerts, _ = run(ThreadRaidDetector,
                    [*background(NOON), *long_raid, *flush(start + 6 * 3600)])
    mine = one_incident(alerts, "thread_raid")
    opened, last = mine[0].count, mine[-1].count
    assert last >= 5400  # the resolve carries every post since the window that opened it
    bound = math.ceil(math.log(last / opened, 1.5)) + 1  # growth by half, plus a severity rise
    assert 2 <= len(mine) - 2 <= bound  # minus the opening alert and the resolve
    hours_after_open = [(a.last_seen - mine[0].last_seen).total_seconds() / 3600
                        for a in mine[1:-1]]
    assert sum(h >= 1 for h in hours_after_open) <= 4  # after the first hour: rare


def test_a_raid_resolves_when_the_raiders_stop_though_members_keep_posting() -> None:
    """A raid on a new thread (threshold = the floor, 8) ends after 2 minutes; members go on
    posting once a minute, half the floor per window. The incident stayed open while the posts
    were ≥ threshold / 2 whoever wrote them: 3 more hours, 5 more updates, members' posts counted
    as the raid's. Now it goes on only while young authors are still ≥ half the bar: the
    members' posts among the raiders' (while those are in the window) count, and it resolves one
    window after the last of them."""
    raiders = [post(100 + i, "t-new", f"raider{i % 10}", NOON + 4 * i, created=young(NOON))
               for i in range(30)]
    members = [post(1000 + i, "t-new", f"old{i % 30}", NOON + 120 + 60 * i) for i in range(180)]
    alerts, _ = run(ThreadRaidDetector, [*raiders, *members, *flush(NOON + 4 * 3600)])
    mine = one_incident(alerts, "thread_raid")
    assert mine[-1].count == 35 and mine[-1].last_seen == utc(NOON + 360)
    assert mine[-1].evidence["resolved_at"] == utc(NOON + 660).isoformat()


# ------------------------------------------------------------------------------ new_account_swarm


def test_new_account_swarm_fires_once_and_a_few_newcomers_do_not() -> None:
    swarm = [post(3000 + i, f"t{i % 9}", f"new{i}", NOON + 3600 + i * 20,
                  created=young(NOON + 3600)) for i in range(20)]
    newcomers = [post(4000 + i, f"t{i}", f"newbie{i}", NOON + i * 900,
                      created=young(NOON)) for i in range(4)]
    alerts, _ = run(NewAccountSwarmDetector, [*newcomers, *swarm, *flush(NOON)])
    mine = one_incident(alerts, "new_account_swarm")
    assert mine[-1].count == 20 and mine[0].evidence["board"] == "b1"
    alerts, _ = run(NewAccountSwarmDetector, [*newcomers, *flush(NOON)])
    assert alerts == []


# ------------------------------------------------------------------------------ text_brigade

BRIGADE = "this moderator team is corrupt and everyone should leave this forum right now"


def test_text_brigade_fires_once_on_near_duplicates_from_many_accounts() -> None:
    variants = [BRIGADE, BRIGADE + " !!", "wow " + BRIGADE, BRIGADE.upper(), BRIGADE + " ok",
                BRIGADE.replace("now", "today")]
    brigade = [post(5000 + i, f"t{i}", f"acct{i}", NOON + 3600 + i * 30, body=variants[i])
               for i in range(6)]
    spam = [post(6000 + i, f"t{i}", "one-spammer", NOON + 3600 + i, body=BRIGADE)
            for i in range(6)]
    alerts, _ = run(TextBrigadeDetector, [*background(NOON, 1), *brigade, *flush(NOON)])
    mine = one_incident(alerts, "text_brigade")
    assert mine[0].count == 4 and mine[-1].count == 6
    assert len(mine[0].evidence["excerpt"]) <= 80
    alerts, _ = run(TextBrigadeDetector, [*background(NOON, 1), *spam, *flush(NOON)])
    assert alerts == []


def test_text_signatures_signed_ahead_in_a_thread_give_the_same_alerts() -> None:
    """The agent signs a batch in a worker thread and hands it over: the detector then hashes
    nothing itself, and raises exactly the alerts it raises when it signs on its own."""
    brigade = [post(5000 + i, f"t{i}", f"acct{i}", NOON + 3600 + i * 30, body=BRIGADE + f" {i}")
               for i in range(6)]
    events = [*background(NOON, 1), *brigade, *flush(NOON)]
    inline, _ = run(TextBrigadeDetector, events)

    config = BurstConfig()
    c = config.thresholds.text_brigade
    signatures = TextSignatures(c.num_perm, c.shingle)
    with ThreadPoolExecutor(1) as pool:
        signed = pool.submit(signatures.sign,
                             [d.body for d, _ in events if isinstance(d, PostData)]).result()
    signatures.use(signed)
    signatures.of = None  # type: ignore[assignment, method-assign]  # any hashing now fails
    ahead, _ = run(lambda cfg: TextBrigadeDetector(cfg, signatures), events, config)
    assert ahead == inline and one_incident(ahead, "text_brigade")


LONG = ("everyone who still posts here should know that the moderators delete every thread "
        "that criticises them so join us on the other board tonight and bring your friends "
        "along with you")


def edited(i: int) -> str:
    """LONG with two words inserted: Jaccard ≈ 0.7 on word 3-shingles (under 0.9, over 0.5)."""
    words = LONG.split()
    words.insert(5 + i, f"extra{i}")
    words.insert(20 + i, f"more{i}")
    return " ".join(words)


def test_a_reload_of_the_index_parameters_reindexes_the_window() -> None:
    strict = dataclasses.replace(BurstThresholds(), text_brigade=dataclasses.replace(
        BurstThresholds().text_brigade, similarity=0.9))
    before = [post(7000 + i, f"t{i}", f"acct{i}", NOON + i * 30, body=body)
              for i, body in enumerate([LONG, LONG, edited(0)])]
    after = [post(7010 + i, f"t{i}", f"late{i}", NOON + 300 + i * 30, body=edited(i + 1))
             for i in range(2)]

    def brigade(reindex: bool) -> list[AlertData]:
        config = BurstConfig(strict)
        detector = TextBrigadeDetector(config, TextSignatures(64, 3))
        runner = Watermarked([detector], config)
        alerts = [a for data, at in before for a in runner.observe(data, at)]
        assert alerts == []  # 2 accounts on LONG; the edit is under 0.9
        runner.reconfigure(BurstConfig())  # similarity 0.5
        if reindex:
            detector.reindex(TextSignatures(64, 3))
        return [a for data, at in after for a in runner.observe(data, at)]

    opened = brigade(reindex=True)
    assert [a.count for a in opened] == [4]  # both late edits join LONG's cluster
    assert opened[0].evidence["similarity"] == 0.5
    assert brigade(reindex=False) == []  # the 0.9 index finds no match for the edits


# ------------------------------------------------------------------------------ image_spray

HASH = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"


def flip(hex_hash: str, bits: int) -> str:
    value = int(hex_hash, 16) ^ ((1 << bits) - 1)
    return f"{value:064x}"


def test_image_spray_fires_once_on_near_identical_images() -> None:
    spray = [pdq(i, f"acct{i}", flip(HASH, i * 3), NOON + i * 10) for i in range(6)]
    other = [pdq(100 + i, f"acct{i}", flip(HASH, 128 + i), NOON + i) for i in range(6)]
    alerts, _ = run(ImageSprayDetector, [*spray, *flush(NOON)])
    assert one_incident(alerts, "image_spray")[-1].count == 6
    distinct = [pdq(200 + i, f"acct{i}", f"{(i * 0x9E3779B97F4A7C15) ** 4 % (1 << 256):064x}",
                    NOON + i) for i in range(6)]
    alerts, _ = run(ImageSprayDetector, [*distinct, *other[:1], *flush(NOON)])
    assert alerts == []


# ------------------------------------------------------------------------------ all detectors

ATTACKS: dict[str, tuple[Callable[[BurstConfig], Any], list[Event]]] = {
    "report_surge": (ReportSurgeDetector, surge(NOON, 12)),
    "thread_raid": (ThreadRaidDetector, raid(NOON)),
    "text_brigade": (TextBrigadeDetector, [post(i, f"t{i}", f"a{i}", NOON + i, body=BRIGADE)
                                           for i in range(6)]),
    "image_spray": (ImageSprayDetector, [pdq(i, f"a{i}", HASH, NOON + i) for i in range(6)]),
}


@pytest.mark.parametrize("kind", sorted(ATTACKS))
def test_replay_gives_identical_alerts(kind: str) -> None:
    make, events = ATTACKS[kind]
    first, _ = run(make, [*events, *flush(NOON)])
    again, _ = run(make, [*events, *flush(NOON)])
    assert first and first == again


@pytest.mark.parametrize("kind", sorted(ATTACKS))
def test_state_expires(kind: str) -> None:
    make, events = ATTACKS[kind]
    config = BurstConfig()
    runner = Watermarked([make(config)], config)
    for data, at in events:
        runner.observe(data, at)
    assert runner.state_size() > 0
    for data, at in flush(NOON + 3 * 86_400):
        runner.observe(data, at)
    runner.advance(force=True)
    # only the flush report's own target may remain
    assert runner.state_size() <= 2


def test_late_events_behind_the_watermark_are_dropped() -> None:
    config = BurstConfig()
    runner = Watermarked([ReportSurgeDetector(config)], config)
    runner.observe(*rep(1, "x", "a", NOON + 3600))
    assert runner.observe(*rep(2, "y", "b", NOON)) == []
    assert runner.state_size() == 2  # only target x and its vote


def test_staffed_hours_in_another_timezone() -> None:
    hours = StaffedHours(timezone="America/New_York")
    assert not hours.covers(datetime(2025, 2, 4, 12, 0, tzinfo=timezone.utc))  # 07:00 local
    assert hours.covers(datetime(2025, 2, 4, 14, 0, tzinfo=timezone.utc))
    assert StaffedHours().covers(datetime(2025, 2, 4, 14, 0, tzinfo=timezone.utc))

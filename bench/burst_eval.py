"""Evaluation harness for burst detection: simulated forum traffic with injected attacks.

    python -m bench.burst_eval [--mode pipeline|in-process|both] [--days 7] [--seed 1]
                               [--accounts 5000] [--threads 2000] [--posts-per-minute 40]

A seeded simulator writes a week of forum traffic — a diurnal post rate, thousands of accounts
(a few percent newly created during the week) and threads on boards, sparse ordinary reports,
images with unrelated PDQ hashes — and injects attacks of every kind at three sizes, at random
times of day and night. Every event becomes the exact CloudEvent bytes a forum would produce
(deterministic ids, `time` = event time), followed by end-of-input sentinels (`bench.
burst_wire`). Then, by `--mode`:

- `pipeline` (default, the documented results): an embedded broker and a real
  `vigil worker --agents burst`; the events are produced as fast as the broker takes them (event
  time is accelerated: a week goes through in minutes) and the alerts are read back from
  `safety.alerts.v1` (`bench.burst_pipeline`).
- `in-process`: the same bytes decoded and fed, in order, to the pure detectors through the
  `Watermarked` driver the agent uses — seconds instead of minutes, for tuning.
- `both`: both, and a check that they produced the very same alerts (ids and contents).

Printed per kind: precision, recall, detection delay (event time from attack start to the
first alert, and for report surges from the report that crossed the threshold), false alerts
per simulated day (detector memory is `bench.burst_state`). Same
seed → same events → same alerts (the digest of the sorted alert ids printed at the end).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import math
import random
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import msgspec

from agents.bursts import (
    BurstConfig,
    ImageSprayDetector,
    NewAccountSwarmDetector,
    ReportSurgeDetector,
    TextBrigadeDetector,
    ThreadRaidDetector,
    Watermarked,
)
from agents.policy import load_default_policy
from bench.burst_pipeline import run_pipeline
from bench.burst_wire import Message, is_sentinel, sentinels, to_wire
from streams.codec import decode
from streams.events import Account, AlertData, PostData, ReportData, SignalData
from streams.topics import POSTS, REPORTS, SIGNALS

DAY = 86_400.0
START_DT = datetime(2025, 2, 3, tzinfo=timezone.utc)  # a Monday, 00:00 UTC
START = START_DT.timestamp()
EXPECTED = {"report_surge": "report_surge", "mass_report": "report_brigade",
            "raid": "thread_raid", "swarm": "new_account_swarm",
            "brigade": "text_brigade", "spray": "image_spray"}
SIZES = {"report_surge": (6, 10, 25), "mass_report": (8, 15, 30), "raid": (30, 60, 120),
         "swarm": (10, 20, 40), "brigade": (4, 8, 16), "spray": (4, 8, 16)}


@dataclass
class Attack:
    kind: str
    size: int
    start: float
    end: float
    keys: set[str]
    crossing: float | None = None  # report_surge: when the threshold was crossed


@dataclass
class Forum:
    """The simulated forum: accounts, threads, boards, vocabulary."""

    rng: random.Random
    accounts: int = 5000
    threads: int = 2000
    boards: int = 20
    created: list[float] = field(default_factory=list)
    activity: list[float] = field(default_factory=list)  # cumulative weights, by account
    thread_weight: list[float] = field(default_factory=list)  # cumulative, by thread
    vocabulary: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        r = self.rng
        for i in range(self.accounts):
            if i < self.accounts * 0.05:  # joins during the week
                self.created.append(START + r.uniform(-DAY, 7 * DAY))
            else:
                self.created.append(START - r.uniform(30 * DAY, 2000 * DAY))
        activity = [1 / (i + 1) ** 0.8 for i in range(self.accounts)]
        r.shuffle(activity)
        # cumulative weights once: `choices(population, weights)` would re-add them per call
        self.activity = list(itertools.accumulate(activity))
        self.thread_weight = list(itertools.accumulate(1 / (i + 1) ** 0.9
                                                      for i in range(self.threads)))
        self.vocabulary = [f"w{i}" for i in range(3000)]
        self.word_weight = list(itertools.accumulate(1 / (i + 1) for i in range(3000)))

    def account(self, i: int, created: float | None = None) -> Account:
        at = self.created[i] if created is None else created
        return Account(id=f"u{i}", created_at=datetime.fromtimestamp(at, timezone.utc))

    def board(self, thread: int) -> str:
        return f"b{thread % self.boards}"

    def body(self) -> str:
        n = self.rng.randint(6, 40)
        return " ".join(self.rng.choices(self.vocabulary, cum_weights=self.word_weight, k=n))


def diurnal(at: float) -> float:
    """Relative activity by hour of day (UTC): low at 04:00, peak at 20:00."""
    hour = (at % DAY) / 3600
    return 0.25 + 0.75 * (0.5 + 0.5 * math.cos((hour - 20) / 24 * 2 * math.pi))


def simulate(days: float, seed: int, posts_per_minute: float = 40.0, accounts: int = 5000,
             threads: int = 2000) -> tuple[list[tuple[float, int, Any]], list[Attack]]:
    """(event time, sequence, payload) sorted, and the injected attacks (ground truth)."""
    rng = random.Random(seed)
    forum = Forum(rng, accounts, threads)
    events: list[tuple[float, int, Any]] = []
    seq = 0

    def emit(at: float, data: Any) -> None:
        nonlocal seq
        seq += 1
        events.append((at, seq, data))

    # --- normal traffic
    post_no = image_no = report_no = 0
    end = START + days * DAY
    minute = START
    while minute < end:
        n = _poisson(rng, posts_per_minute * diurnal(minute))
        threads = rng.choices(range(forum.threads), cum_weights=forum.thread_weight, k=n)
        authors = rng.choices(range(forum.accounts), cum_weights=forum.activity, k=n)
        for thread, author in zip(threads, authors):
            at = minute + rng.uniform(0, 60)
            if forum.created[author] > at:
                author = author + int(forum.accounts * 0.05)  # not yet registered: someone old
            post_no += 1
            pid = f"p{post_no}"
            emit(at, PostData(post_id=pid, thread_id=f"t{thread}", board=forum.board(thread),
                              author=forum.account(author), body=forum.body()))
            if rng.random() < 0.1:
                image_no += 1
                emit(at + 2, SignalData(detector="pdq", detector_version="pdq-1",
                                        content_type="image", content_id=f"i{image_no}",
                                        author_id=f"u{author}", thread_id=f"t{thread}",
                                        evidence={"pdq": f"{rng.getrandbits(256):064x}"}))
            if rng.random() < 0.01:  # reported by 1–3 members over the next hours
                for _ in range(min(3, 1 + int(rng.expovariate(1.5)))):
                    report_no += 1
                    reporter = rng.randrange(int(forum.accounts * 0.05), forum.accounts)
                    emit(at + rng.uniform(60, 4 * 3600), ReportData(
                        report_id=f"r{report_no}", target_type="post", target_id=pid,
                        thread_id=f"t{thread}", reporter=forum.account(reporter)))
        minute += 60

    # --- attacks: each kind at each size, three times, at random times of day and night
    attacks: list[Attack] = []
    config = BurstConfig()
    attacker = 0
    template_no = 0
    for kind, sizes in SIZES.items():
        for size in sizes:
            for _ in range(3):
                start = START + rng.uniform(0.1, days - 0.2) * DAY
                thread = rng.randrange(forum.threads)
                board = forum.board(thread)
                if kind in ("report_surge", "mass_report"):
                    target = f"victim{len(attacks)}"
                    emit(start - 600, PostData(post_id=target, thread_id=f"t{thread}",
                                               board=board, author=forum.account(7),
                                               body=forum.body()))
                    span = 300 if kind == "report_surge" else 600
                    times = sorted(start + rng.uniform(0, span) for _ in range(size))
                    times[0] = start
                    for i, at in enumerate(times):
                        report_no += 1
                        if kind == "report_surge":  # established members
                            who = forum.account(rng.randrange(int(forum.accounts * 0.05),
                                                              forum.accounts))
                        else:  # a fresh swarm
                            attacker += 1
                            who = Account(id=f"x{attacker}", created_at=datetime.fromtimestamp(
                                start - rng.uniform(600, 3 * DAY), timezone.utc))
                        emit(at, ReportData(report_id=f"r{report_no}-{i}", target_type="post",
                                            target_id=target, thread_id=f"t{thread}",
                                            reporter=who))
                    need = config.at(start).report_surge.min_weight
                    attacks.append(Attack(kind, size, start, times[-1], {target},
                                          crossing=times[min(len(times), math.ceil(need)) - 1]))
                elif kind in ("raid", "swarm"):
                    accounts = size // 4 if kind == "raid" else size
                    span = 300 if kind == "raid" else 600
                    posts = size if kind == "raid" else size + size // 2
                    ids = []
                    first = attacker
                    attacker += accounts
                    times = sorted(start + rng.uniform(0, span) for _ in range(posts))
                    times[0] = start
                    for i, at in enumerate(times):
                        who = first + (i % accounts)
                        t = thread if kind == "raid" else _thread_on(rng, forum, board)
                        post_no += 1
                        ids.append(f"t{t}")
                        emit(at, PostData(
                            post_id=f"p{post_no}", thread_id=f"t{t}", board=board,
                            author=Account(id=f"x{who}", created_at=datetime.fromtimestamp(
                                start - 3600 * (1 + who % 12), timezone.utc)),
                            body=forum.body()))
                    attacks.append(Attack(kind, size, start, times[-1],
                                          {*ids, f"board:{board}"}))
                elif kind == "brigade":
                    template_no += 1
                    text = forum.body() + f" join us at raid{template_no}"
                    words = text.split()
                    times = sorted(start + rng.uniform(0, 1200) for _ in range(size))
                    times[0] = start
                    ids = set()
                    for i, at in enumerate(times):
                        edited = list(words)
                        for _ in range(rng.randint(0, 2)):  # small edits
                            edited.insert(rng.randrange(len(edited)), rng.choice(["!!", "lol",
                                                                                  "pls"]))
                        t = _thread_on(rng, forum, board)
                        post_no += 1
                        ids.add(f"p{post_no}")
                        who = rng.randrange(int(forum.accounts * 0.05), forum.accounts)
                        emit(at, PostData(post_id=f"p{post_no}", thread_id=f"t{t}",
                                          board=board, author=forum.account(who),
                                          body=" ".join(edited)))
                    attacks.append(Attack(kind, size, start, times[-1],
                                          {*ids, f"board:{board}"}))
                else:  # spray
                    base = rng.getrandbits(256)
                    times = sorted(start + rng.uniform(0, 1200) for _ in range(size))
                    times[0] = start
                    ids = set()
                    for i, at in enumerate(times):
                        value = base
                        for _ in range(rng.randint(0, 12)):
                            value ^= 1 << rng.randrange(256)
                        image_no += 1
                        ids.add(f"i{image_no}")
                        emit(at, SignalData(detector="pdq", detector_version="pdq-1",
                                            content_type="image", content_id=f"i{image_no}",
                                            author_id=f"u{rng.randrange(forum.accounts)}",
                                            thread_id=f"t{_thread_on(rng, forum, board)}",
                                            evidence={"pdq": f"{value:064x}"}))
                    attacks.append(Attack(kind, size, start, times[-1], ids))
    events.sort(key=lambda e: (e[0], e[1]))
    return events, attacks


def _thread_on(rng: random.Random, forum: Forum, board: str) -> int:
    b = int(board[1:])
    return b + forum.boards * rng.randrange(forum.threads // forum.boards)


def _poisson(rng: random.Random, mean: float) -> int:
    # normal approximation is plenty for means ≥ 10; exact for small means
    if mean > 30:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def run_in_process(messages: list[Message], config: BurstConfig
                   ) -> tuple[list[AlertData], dict[str, float]]:
    """What the agent does per partition, with one partition per stream: decode the bytes,
    take the CloudEvent `time`, feed the detector group(s) of that stream in order."""
    groups = {
        "reports": Watermarked([ReportSurgeDetector(config)], config),
        "threads": Watermarked([ThreadRaidDetector(config)], config),
        "boards": Watermarked([NewAccountSwarmDetector(config), TextBrigadeDetector(config)],
                              config),
        "images": Watermarked([ImageSprayDetector(config)], config),
    }
    streams = {REPORTS.name: ("reports",), POSTS.name: ("threads", "boards"),
               SIGNALS.name: ("images",)}
    alerts: list[AlertData] = []
    seconds: dict[str, float] = defaultdict(float)
    for message in messages:
        event = decode(message.spec, message.value)
        at = event.time.timestamp()  # type: ignore[union-attr] - the simulator always sets it
        for name in streams[message.spec.name]:
            started = time.perf_counter()
            alerts += groups[name].observe(event.data, at)
            seconds[name] += time.perf_counter() - started
    return alerts, seconds


@dataclass(frozen=True)
class Scale:
    """The simulated forum's size (documented with the results)."""

    days: float = 7.0
    accounts: int = 5000
    threads: int = 2000
    posts_per_minute: float = 40.0


def build(scale: Scale, seed: int) -> tuple[list[Message], list[Attack], int]:
    """The wire messages (simulated traffic, then sentinels), the attacks, and the number of
    simulated posts."""
    events, attacks = simulate(scale.days, seed, scale.posts_per_minute, scale.accounts,
                               scale.threads)
    posts = sum(isinstance(e[2], PostData) for e in events)
    return to_wire(events + sentinels(START + (scale.days + 1.5) * DAY)), attacks, posts


def score(alerts: list[AlertData], attacks: list[Attack], days: float) -> list[str]:
    """Report lines: per kind recall, precision, delay and false alerts per simulated day.

    Order-independent (the pipeline interleaves streams differently from the in-process run):
    an incident is its dedup_key, first seen at its earliest alert.
    """
    real = [a for a in alerts if not is_sentinel(a)]
    first: dict[str, AlertData] = {}
    for alert in sorted(real, key=lambda a: (a.last_seen or START_DT, a.alert_id)):
        first.setdefault(alert.dedup_key or alert.alert_id, alert)
    incidents = list(first.values())

    def keys(alert: AlertData) -> set[str]:
        out = {f"board:{alert.evidence['board']}"} if alert.evidence.get("board") else set()
        if alert.target is not None:
            out.add(alert.target.id)
        return out

    def matches(alert: AlertData, attack: Attack) -> bool:
        at = alert.first_seen.timestamp() if alert.first_seen else 0.0
        return bool(keys(alert) & attack.keys) and attack.start - 1800 <= at <= attack.end + 1800

    explained: dict[str, int] = defaultdict(int)
    false: dict[str, int] = defaultdict(int)
    for alert in incidents:
        if any(matches(alert, a) for a in attacks):
            explained[alert.kind] += 1
        else:
            false[alert.kind] += 1
    detected: dict[int, float] = {}
    for n, attack in enumerate(attacks):
        hits = [a for a in incidents if a.kind == EXPECTED[attack.kind] and matches(a, attack)]
        if hits:
            detected[n] = min(a.last_seen.timestamp() for a in hits if a.last_seen)

    lines = [f"{'kind':<18} {'sizes':<12} {'recall':>7} {'precision':>9} {'delay p50':>9} "
             f"{'delay max':>9} {'false/day':>9}"]
    for kind, alert_kind in EXPECTED.items():
        mine = [(n, a) for n, a in enumerate(attacks) if a.kind == kind]
        delays = [detected[n] - a.start for n, a in mine if n in detected]
        total = explained[alert_kind] + false[alert_kind]
        precision = explained[alert_kind] / total if total else float("nan")
        lines.append(f"{alert_kind:<18} {'/'.join(map(str, SIZES[kind])):<12} "
                     f"{len(delays) / len(mine):>7.2f} {precision:>9.2f} "
                     f"{_s(statistics.median(delays) if delays else None):>9} "
                     f"{_s(max(delays) if delays else None):>9} {false[alert_kind] / days:>9.2f}")
        missed = [(a.size, datetime.fromtimestamp(a.start, timezone.utc).strftime("%a %H:%M"))
                  for n, a in mine if n not in detected]
        if missed:
            lines.append(f"    missed (size, start): {missed}")
        after = [detected[n] - a.crossing for n, a in mine
                 if n in detected and a.crossing is not None]
        if kind == "report_surge" and after:
            lines.append(f"    delay after the N-th report: max {_s(max(after))}")
        if kind == "mass_report":  # trust weighting should keep a fresh swarm from a surge
            surged = [a for _, a in mine if any(i.kind == "report_surge" and matches(i, a)
                                                for i in incidents)]
            lines.append(f"    also raised report_surge: {len(surged)} of {len(mine)} "
                         f"(sizes {sorted({a.size for a in surged})})")
    lines.append(f"{len(real)} alert events, {len(incidents)} incidents; alert-id digest "
                 f"{digest(real)}")
    return lines


def digest(alerts: list[AlertData]) -> str:
    """Fingerprint of a run's alerts: sorted ids (arrival order differs between modes)."""
    ids = sorted(a.alert_id for a in alerts if not is_sentinel(a))
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]


def compare(pipeline: list[AlertData], in_process: list[AlertData]) -> list[str]:
    """Lines describing how the two modes' alerts differ (ids and contents); empty if equal.

    Sentinels are left out: the pipeline run stops reading at their first alerts.
    """
    mine = {a.alert_id: msgspec.to_builtins(a) for a in pipeline if not is_sentinel(a)}
    theirs = {a.alert_id: msgspec.to_builtins(a) for a in in_process if not is_sentinel(a)}
    out = [f"only through the pipeline: {k}" for k in sorted(mine.keys() - theirs.keys())]
    out += [f"only in-process: {k}" for k in sorted(theirs.keys() - mine.keys())]
    out += [f"different contents: {k}" for k in sorted(mine.keys() & theirs.keys())
            if mine[k] != theirs[k]]
    return out


def evaluate(mode: str, scale: Scale, seed: int) -> None:
    started = time.perf_counter()
    messages, attacks, posts = build(scale, seed)
    print(f"simulated {scale.days:g} days, seed {seed}: {scale.accounts:,} accounts, "
          f"{scale.threads:,} threads, {scale.posts_per_minute:g} posts/min at the peak → "
          f"{len(messages):,} events ({posts:,} posts), {len(attacks)} attacks; "
          f"simulation {time.perf_counter() - started:.1f} s", flush=True)
    # what the worker loads without VIGIL_POLICY: the shipped default policy's [burst]
    config = BurstConfig.from_policy(load_default_policy())
    results: dict[str, list[AlertData]] = {}
    if mode in ("in-process", "both"):
        started = time.perf_counter()
        results["in-process"], seconds = run_in_process(messages, config)
        print(f"in-process: {time.perf_counter() - started:.1f} s (detectors "
              + ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items()) + ")", flush=True)
    if mode in ("pipeline", "both"):
        run = asyncio.run(run_pipeline(messages))
        results["pipeline"] = run.alerts
        print(f"pipeline: worker ready in {run.ready_s:.1f} s; {len(messages):,} events "
              f"produced in {run.produce_s:.1f} s; all alerts in {run.done_s:.1f} s "
              f"({len(messages) / run.done_s:,.0f} events/s, "
              f"{scale.days * DAY / run.done_s:,.0f}× event time); CPU: worker "
              f"{run.worker_cpu_s:.0f} s, broker {run.broker_cpu_s:.0f} s; load average "
              f"{run.load} (2 cores)", flush=True)
    for name, alerts in results.items():
        print(f"--- {name}")
        print("\n".join(score(alerts, attacks, scale.days)))
    if len(results) == 2:
        diff = compare(results["pipeline"], results["in-process"])
        print("pipeline and in-process alerts: " + ("identical (ids and contents)" if not diff
                                                    else f"{len(diff)} differences"))
        for line in diff[:20]:
            print("    " + line)


def _s(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.0f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=("pipeline", "in-process", "both"), default="pipeline")
    parser.add_argument("--days", type=float, default=Scale.days)
    parser.add_argument("--accounts", type=int, default=Scale.accounts)
    parser.add_argument("--threads", type=int, default=Scale.threads)
    parser.add_argument("--posts-per-minute", type=float, default=Scale.posts_per_minute)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    evaluate(args.mode, Scale(args.days, args.accounts, args.threads, args.posts_per_minute),
             args.seed)


if __name__ == "__main__":
    main()

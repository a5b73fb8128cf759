"""Sustained mixed traffic through the whole pipeline on the embedded broker (issue 9, item 3).

One run, one embedded Tansu broker (started here; every measurement below uses it):

1. **References** — `bench.passthrough`'s default-faust pass-through **baseline** and aiokafka
   **ceiling** (same cases, same code, via `run_case`), and the broker's own produce → consume
   **round trip** (`bench.decide.round_trip`: aiokafka, one record at a time, 50 ms fetch wait),
   all measured before Vigil starts, on the idle broker.
2. **Vigil** — `--mode run` (default): one `vigil run` process (every role: intake, hashing,
   classify, burst, decide, notify, forum_webhook — idle without a URL — with the console's feed
   off, `VIGIL_CONSOLE_ENABLED=false`) pointed at this broker with `VIGIL_BROKER`, under the
   shipped default policy (decide waits for `text_abuse` on posts and `nsfw_image` on images).
   `--mode no-classify`: one `vigil worker --agents intake,hashing,decide` under the default policy
   without classifier requirements (`tests.integration.helpers.start_vigil` writes it:
   `image = ["sha256", "md5", "pdq"]`, `post = []`). `--mode split`: the roles of `vigil run`
   in three `vigil worker` processes (`LAYOUTS`), shipped policy; CPU and RSS are their sums.
   Everything else is Vigil's defaults (6 partitions, 5 s decide deadline, signing on);
   `--vigil-env` sets a setting under test.
3. **Traffic** — produced from this process with aiokafka straight to the input topics (the
   forum's side of the contract): ≈ 90 % `forum.post.created` (random 12–60-word bodies from a
   small vocabulary, 20 000 authors, 20 000 threads, 10 boards), ≈ 8 % `forum.image.uploaded`
   (a fresh Pillow-drawn PNG each, 48–160 px, random background and 4–10 random shapes, inline
   base64, ≈ 1.4 KB), ≈ 2 % `forum.report.created` against a recent post (reports get no
   verdict; burst reads them). Steady rate: every 5 ms the events due so far are sent.
4. **Capacity probe** — a burst of mixed events produced as fast as possible (sized from a
   500-event first burst so that its posts drain in ≈ 4 s, inside decide's 5 s deadline, or
   `--probe-size`); the posts' verdicts/s
   over the drain (first fetch excluded, as `bench.passthrough` does; deadline holds excluded)
   is the pipeline's post throughput: the figure comparable to the baseline, which also drains a
   backlog. Between phases the pipeline is *settled*: canary posts and images until they all get
   a verdict within 1 s that is not a deadline hold (a detector can still have a backlog when
   decide has already held everything at its deadline).
   A second probe, posts only (`POSTS_ONLY`: 98 % posts, 2 % reports), follows on a settled
   pipeline: issue 9's target is about *posts* through the whole pipeline, and in the mixed burst
   the images' open_nsfw inference (≈ 100× a post's CPU) shares the 2 cores with them.
5. **`--rate auto`** — then 6 s steps at 0.8, 0.68, 0.58 … × the probe's input rate until one
   is *sustainable*: ≥ 99 % of its verdicts within 2 s of the step's end, p99 ≤ `--max-p99`
   (1 s), ≤ 1 % deadline holds, and no growing queue (the last second's p50 ≤ 1.5 × the first
   second's + 100 ms). The sustained phase then runs at `--headroom` (0.5) × that rate: on this
   box a rate that holds for 6 s builds a queue over minutes (0.8 × did, in both modes: the
   broker slows as it fills; see docs/performance.md). `--rate N` skips the
   search (the probe still runs unless `--no-probe`).
6. **Sustained run** — `--seconds` (120) at that rate; verdicts read by a group-less aiokafka
   consumer (all partitions of `safety.verdicts.v1` and the dead-letter topic), matched to
   inputs by content id. Latency = verdict arrival − produce time (monotonic clock, this
   process). Throughput = the sustained phase's post verdicts/s. Then a drain of up to
   `--drain-seconds` for what is still on its way.
7. **Accounting** — every post and image produced in every phase must have a verdict (or a
   dead letter); missing, duplicate and unknown verdicts, deadline holds ("no answer before
   deadline") and the verdict mix are printed.
8. **Memory** — RSS of the Vigil process (and its children) and of the broker every
   `--rss-interval` s (5) from ready to the end, with the 1-minute load average; the slope
   (least squares, MB/min) over the sustained phase. Tansu keeps every record in memory (it
   ignores retention), so the broker grows by design ≈ with the bytes written; Vigil's own
   bounded windows (decide's memory of decided contents, recent hashes for retroactive
   matching, burst windows and per-thread state) grow until their caps, which a short run does
   not reach; a sustained phase of ≥ 10 minutes also prints the RSS, its slope and the mean CPU
   per 5-minute window, the last ones last, and the slope over the last two (the leak check:
   flat = no growth once the caps are reached). `--small-caps` lowers the caps
   (`SMALL_CAPS_ENV`, `SMALL_CAPS_POLICY`) and the forum's threads and authors
   (`SMALL_CAPS_FORUM`) so that ≈ 10 events/s fill them within minutes. Vigil's and the
   broker's CPU share per sample are printed too: Tansu's memory storage lists every record
   batch of a partition on each fetch that returns data (`bench.broker_fetch`), so under
   constant input the broker's CPU grows with rate² × time and on the embedded broker every
   rate eventually stops being sustainable; the per-10 s latency timeline and the broker
   round trip sampled during the run show when.
9. **Accounting after the drain** — inputs still without a verdict after `--drain-seconds`
   are looked up again by a new consumer reading the verdicts and dead-letter topics from the
   beginning: found there = the collector missed them; not found = Vigil never answered.

The Vigil log is scanned for ERROR/CRITICAL/Traceback lines at the end.

Run from the repository root (≈ 4 min with the defaults)::

    PYTHONPATH=. .venv/bin/python -m bench.load [--mode run|no-classify] [--seconds 120]
        [--rate auto|EVENTS_PER_S]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import io
import os
import random
import shutil
import statistics
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from PIL import Image, ImageDraw

import agents.policy

from bench.decide import load_average, pct, round_trip, worker_env
from bench.passthrough import CASES_BY_NAME, cpu_seconds, load_embedded_broker, run_case
from streams.topics import ALERTS, DEADLETTER, IMAGES, POSTS, REPORTS, VERDICTS
from tests.integration.helpers import Worker, cloud_event, start_vigil, wait_ready
from vigil.broker import ensure_topics, free_port

MIB = 1024 * 1024
MIX = (("post", 0.90), ("image", 0.08), ("report", 0.02))
#: The second capacity probe: posts (and the reports that go with them) only, for issue 9's
#: "posts through the whole pipeline" target without open_nsfw's CPU in the same burst.
POSTS_ONLY = (("post", 0.98), ("image", 0.0), ("report", 0.02))
TICK = 0.005
# A forum big enough for these rates: 500 threads at 300 posts/s is a raid on every thread.
THREADS = 20_000
AUTHORS = 20_000
DEADLINE_REASON = "no answer before deadline"
MEMBER_SINCE = "2024-06-01T00:00:00Z"  # every bench account is well past burst's 7-day "young"
BENCH_START = datetime(2025, 2, 4, 2, 13, 5, tzinfo=timezone.utc)  # the helper's constant `time`
WORDS = (
    "the", "a", "of", "to", "and", "in", "is", "it", "that", "for", "on", "was", "with", "as",
    "be", "at", "this", "have", "from", "or", "by", "one", "had", "not", "but", "what", "all",
    "were", "when", "we", "there", "can", "an", "your", "which", "their", "said", "if", "do",
    "will", "each", "about", "how", "up", "out", "them", "then", "she", "many", "some", "so",
    "these", "would", "other", "into", "has", "more", "her", "two", "like", "him", "see", "time",
    "could", "no", "make", "than", "first", "been", "its", "who", "now", "people", "my", "made",
    "over", "did", "down", "only", "way", "find", "use", "may", "water", "long", "little", "very",
    "after", "words", "called", "just", "where", "most", "know", "thread", "forum", "reply",
    "post", "thanks", "great", "question", "answer", "idea", "help", "please", "agree", "disagree",
    "weekend", "game", "build", "release", "patch", "bug", "feature", "photo", "camera", "garden",
    "recipe", "bike", "train", "music", "album", "guitar", "book", "chapter", "coffee", "tea",
    "winter", "summer", "rain", "sun", "city", "river", "mountain", "lake", "island", "road",
    "map",
)


# --------------------------------------------------------------------------------------------
# Traffic


def draw_png(rng: random.Random) -> bytes:
    """A small PNG with random shapes: every image different (bytes and PDQ)."""
    w, h = rng.randint(48, 160), rng.randint(48, 160)
    background = tuple(rng.randrange(256) for _ in range(3))
    img = Image.new("RGB", (w, h), background)  # type: ignore[arg-type]
    draw = ImageDraw.Draw(img)
    for _ in range(rng.randint(4, 10)):
        xs = sorted(rng.randrange(w) for _ in range(2))
        ys = sorted(rng.randrange(h) for _ in range(2))
        colour = tuple(rng.randrange(256) for _ in range(3))
        kind = rng.randrange(4)
        if kind == 0:
            draw.rectangle((xs[0], ys[0], xs[1], ys[1]), fill=colour)  # type: ignore[arg-type]
        elif kind == 1:
            draw.ellipse((xs[0], ys[0], xs[1], ys[1]), fill=colour)  # type: ignore[arg-type]
        elif kind == 2:
            points = [(rng.randrange(w), rng.randrange(h)) for _ in range(3)]
            draw.line(points, fill=colour, width=rng.randint(1, 6))  # type: ignore[arg-type]
        else:
            points = [(rng.randrange(w), rng.randrange(h)) for _ in range(rng.randint(3, 6))]
            draw.polygon(points, fill=colour)  # type: ignore[arg-type]
    out = io.BytesIO()
    img.save(out, "PNG", compress_level=1)
    return out.getvalue()


@dataclass
class Sent:
    kind: str  # post | image
    at: float  # monotonic produce time
    phase: str


@dataclass
class Traffic:
    """Builds and produces the mixed events; remembers what was sent, when, in which phase."""

    producer: AIOKafkaProducer
    prefix: str
    rng: random.Random = field(default_factory=lambda: random.Random(9))
    sent: dict[str, Sent] = field(default_factory=dict)
    reports: Counter[str] = field(default_factory=Counter)
    bytes_out: int = 0
    failures: int = 0
    seq: int = 0
    recent_posts: list[str] = field(default_factory=list)
    mix: tuple[tuple[str, float], ...] = MIX
    threads: int = THREADS
    authors: int = AUTHORS
    #: As a forum sends them: each event's `time` follows the clock it is built by, and every author
    #: and reporter has an account older than a week (`MEMBER_SINCE`). False: the one fixed
    #: `time` and anonymous authors the bench sent before session 4 (`bench.load_bursts`
    #: replays those) — in event time that is one instant, so every burst window held the
    #: whole run and anonymous posters looked like raiders (docs/burst.md).
    forum_like: bool = True

    started: float | None = None  # monotonic time of the first event built

    def _stamped(self, type_: str, data: dict[str, Any]) -> dict[str, Any]:
        """The CloudEvent; forum-like: `time` = `BENCH_START` + seconds since the first event,
        so every run is judged at the same hour of the policy's week (unstaffed, 02:13 UTC)."""
        if not self.forum_like:
            return cloud_event(type_, data)
        now = time.monotonic()
        if self.started is None:
            self.started = now
        at = BENCH_START + timedelta(seconds=now - self.started)
        return cloud_event(type_, data, time=at.isoformat().replace("+00:00", "Z"))

    def _account(self) -> dict[str, Any]:
        account: dict[str, Any] = {"id": f"u{self.rng.randrange(self.authors)}"}
        if self.forum_like:
            account["created_at"] = MEMBER_SINCE
        return account

    def _kind(self) -> str:
        x, acc = self.rng.random(), 0.0
        for kind, share in self.mix:
            acc += share
            if x < acc:
                return kind
        return self.mix[-1][0]

    def _failed(self, fut: asyncio.Future[Any]) -> None:
        if fut.cancelled() or fut.exception() is not None:
            self.failures += 1

    def build(self, kind: str, tag: str) -> tuple[str, bytes, bytes, str]:
        """(topic, key, value, content id) of one new event."""
        self.seq += 1
        n, rng = self.seq, self.rng
        thread = f"t{rng.randrange(self.threads)}"
        author = self._account()
        if kind == "post":
            cid = f"{tag}p{n}"
            body = " ".join(rng.choice(WORDS) for _ in range(rng.randint(12, 60)))
            data = {"post_id": cid, "thread_id": thread, "author": author, "body": body,
                    "board": f"b{rng.randrange(10)}"}
            self.recent_posts.append(cid)
            if len(self.recent_posts) > 1000:
                del self.recent_posts[:500]
            event = self._stamped("forum.post.created", data)
            return POSTS.full_name(self.prefix), thread.encode(), orjson.dumps(event), cid
        if kind == "image":
            cid = f"{tag}i{n}"
            post = self.recent_posts[-1] if self.recent_posts else f"{tag}p0"
            data = {"image_id": cid, "post_id": post, "thread_id": thread, "author": author,
                    "content_type": "image/png",
                    "data_b64": base64.b64encode(draw_png(rng)).decode()}
            event = self._stamped("forum.image.uploaded", data)
            return IMAGES.full_name(self.prefix), post.encode(), orjson.dumps(event), cid
        target = rng.choice(self.recent_posts) if self.recent_posts else f"{tag}p0"
        data = {"report_id": f"{tag}r{n}", "target_type": "post", "target_id": target,
                "reporter": self._account(), "thread_id": thread, "reason": "spam"}
        event = self._stamped("forum.report.created", data)
        return REPORTS.full_name(self.prefix), target.encode(), orjson.dumps(event), f"{tag}r{n}"

    async def send(self, phase: str, kind: str | None = None, tag: str = "") -> str:
        kind = kind or self._kind()
        topic, key, value, cid = self.build(kind, tag)
        if kind == "report":
            self.reports[phase] += 1
        else:
            self.sent[cid] = Sent(kind, time.monotonic(), phase)
        fut = await self.producer.send(topic, value, key=key)
        fut.add_done_callback(self._failed)
        self.bytes_out += len(value)
        return cid

    async def steady(self, phase: str, rate: float, seconds: float) -> int:
        """Send at `rate` events/s for `seconds`: every tick, the events due so far."""
        started, n = time.monotonic(), 0
        while (elapsed := time.monotonic() - started) < seconds:
            due = int(elapsed * rate) + 1 - n
            for _ in range(max(due, 0)):
                await self.send(phase)
            n += max(due, 0)
            await asyncio.sleep(TICK)
        await self.producer.flush()
        return n

    async def burst(self, phase: str, count: int) -> None:
        for i in range(count):
            await self.send(phase)
            if i % 200 == 199:
                await asyncio.sleep(0)
        await self.producer.flush()

    def ids(self, phase: str, kind: str | None = None) -> list[str]:
        return [cid for cid, s in self.sent.items()
                if s.phase == phase and (kind is None or s.kind == kind)]


# --------------------------------------------------------------------------------------------
# Verdicts


def content_of(data: dict[str, Any], verdict: bool) -> str | None:
    """The content id a verdict is about, or that of a dead letter's original input (None if
    the original is not a readable post or image)."""
    if verdict:
        return str(data["content_id"])
    with contextlib.suppress(Exception):
        original = orjson.loads(base64.b64decode(data["original"]))["data"]
        return original.get("post_id") or original.get("image_id")
    return None


async def reread(bootstrap: str, prefix: str, partitions: int, wanted: set[str]) -> set[str]:
    """The ids of `wanted` that have a verdict or a dead letter on the topics, read again from
    the beginning by a new consumer: tells an input the collector missed (found here) from one
    Vigil never answered."""
    verdicts = VERDICTS.full_name(prefix)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, fetch_max_wait_ms=50,
                                max_partition_fetch_bytes=8 * MIB)
    await consumer.start()
    found: set[str] = set()
    try:
        consumer.assign([TopicPartition(verdicts, p) for p in range(partitions)]
                        + [TopicPartition(DEADLETTER.full_name(prefix), 0)])
        await consumer.seek_to_beginning()
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < 3.0:
            batch = await consumer.getmany(timeout_ms=200, max_records=50_000)
            for tp, records in batch.items():
                quiet_since = time.monotonic()
                for r in records:
                    assert r.value is not None
                    cid = content_of(orjson.loads(r.value)["data"], tp.topic == verdicts)
                    if cid in wanted:
                        found.add(cid)
    finally:
        await consumer.stop()
    return found


@dataclass
class Collector:
    """Reads verdicts and dead letters (no consumer group) and stamps their arrival."""

    consumer: AIOKafkaConsumer
    traffic: Traffic
    verdicts_topic: str
    arrived: dict[str, float] = field(default_factory=dict)
    verdict_of: dict[str, str] = field(default_factory=dict)
    deadline_holds: set[str] = field(default_factory=set)
    duplicates: int = 0
    unknown: int = 0
    deadletters: list[str] = field(default_factory=list)
    warm: Counter[str] = field(default_factory=Counter)
    bytes_in: int = 0

    async def run(self) -> None:
        while True:
            batch = await self.consumer.getmany(timeout_ms=100, max_records=50_000)
            now = time.monotonic()
            for tp, records in batch.items():
                for record in records:
                    assert record.value is not None
                    self.bytes_in += len(record.value)
                    data = orjson.loads(record.value)["data"]
                    cid = content_of(data, tp.topic == self.verdicts_topic)
                    if tp.topic != self.verdicts_topic:
                        self.deadletters.append(str(data.get("reason")))
                        if cid in self.traffic.sent and cid not in self.arrived:
                            self.arrived[cid] = now
                            self.verdict_of[cid] = "dead-letter"
                        continue
                    if cid.startswith("warm"):
                        self.warm[data["content_type"]] += 1
                    elif cid in self.arrived:
                        self.duplicates += 1
                    elif cid not in self.traffic.sent:
                        self.unknown += 1
                    else:
                        self.arrived[cid] = now
                        self.verdict_of[cid] = data["verdict"]
                        if any(r.get("signal") == DEADLINE_REASON for r in data.get("reasons", [])):
                            self.deadline_holds.add(cid)

    def latencies(self, ids: list[str]) -> list[float]:
        sent = self.traffic.sent
        return [self.arrived[c] - sent[c].at for c in ids if c in self.arrived]

    async def wait_for(self, ids: list[str], timeout: float, share: float = 1.0) -> bool:
        """Until `share` of `ids` have a verdict, or `timeout` s; True if reached."""
        deadline = time.monotonic() + timeout
        allowed = len(ids) - share * len(ids)  # may stay missing
        pending = [c for c in ids if c not in self.arrived]
        while len(pending) > allowed and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            pending = [c for c in pending if c not in self.arrived]
        return len(pending) <= allowed


def drain_rate(stamps: list[float]) -> float | None:
    """Arrivals/s from the first to the last arrival, the first fetch left out."""
    if len(stamps) < 2:
        return None
    stamps = sorted(stamps)
    first, last = stamps[0], stamps[-1]
    counted = sum(1 for s in stamps if s > first)
    return counted / (last - first) if last > first and counted else None


# --------------------------------------------------------------------------------------------
# Memory


def rss_mb(pid: int) -> float:
    """Resident MB of `pid` and its descendants (Linux)."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
            for task in Path(f"/proc/{p}/task").iterdir():
                children = (task / "children").read_text().split()
                stack.extend(int(c) for c in children)
        except OSError:
            continue
    return total / MIB


@dataclass
class Sample:
    t: float
    phase: str
    vigil_mb: float
    broker_mb: float
    load1: float
    vigil_cpu: float = 0.0  # share of one core since the previous sample
    broker_cpu: float = 0.0


def slope_mb_per_min(samples: list[Sample], attr: str) -> float | None:
    if len(samples) < 3:
        return None
    xs = [s.t / 60 for s in samples]
    ys = [getattr(s, attr) for s in samples]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else None


def windows(samples: list[Sample], minutes: float = 5.0) -> list[list[Sample]]:
    """`samples` cut into consecutive `minutes`-long windows, the last one ending with the last
    sample (so "the last 10 minutes" are the last two windows); a short first window is left
    out."""
    if not samples:
        return []
    out: list[list[Sample]] = []
    end = samples[-1].t
    while True:
        start = end - minutes * 60
        window = [s for s in samples if start < s.t <= end]
        if not window or window[0].t - start > minutes * 60 * 0.2:
            break  # no earlier full window
        out.insert(0, window)
        end = start
    return out


# --------------------------------------------------------------------------------------------
# Bounded windows, made small (--small-caps)

#: Vigil's memory bounds, lowered so that a run at a rate the embedded broker sustains for
#: 30 min (≈ 10 events/s: its CPU grows with rate² × time, docs/performance.md) fills them
#: within its first ≈ 6 minutes (defaults: 200 000 decided contents, 200 000 recent images,
#: 50 000 posts / images per 30-minute burst window). Burst also keeps per-thread state for
#: 24 h (`idle_hours`, at least 1 h): bounded by the forum's threads, so the traffic uses
#: `SMALL_CAPS_FORUM` threads and authors, all seen within the first ≈ 10 minutes.
SMALL_CAPS_ENV = {"VIGIL_DECIDE_MEMORY": "3000", "VIGIL_HASH_RETRO_MAX_IMAGES": "200"}
SMALL_CAPS_POLICY = {"max_window_posts = 50000": "max_window_posts = 1000",
                     "max_window_images = 50000": "max_window_images = 200"}
SMALL_CAPS_FORUM = 2000


def small_caps_policy(workdir: Path) -> Path:
    """The shipped policy with the 30-minute burst windows capped by `SMALL_CAPS_POLICY`."""
    text = (Path(agents.policy.__file__).parent / "default.toml").read_text()
    for old, new in SMALL_CAPS_POLICY.items():
        if text.count(old) != 1:
            raise RuntimeError(f"default.toml changed shape ({old!r}): update SMALL_CAPS_POLICY")
        text = text.replace(old, new)
    path = workdir / "small-caps-policy.toml"
    path.write_text(text)
    return path


# --------------------------------------------------------------------------------------------
# Phases


@dataclass
class State:
    phase: str = "start"
    samples: list[Sample] = field(default_factory=list)
    t0: float = field(default_factory=time.monotonic)


@dataclass
class Fleet:
    """The Vigil processes of a run (one, or one per group of roles with `--mode split`):
    CPU and RSS are their sums."""

    workers: list[Worker]

    def cpu(self) -> float:
        return sum(cpu_seconds(w.proc.pid) for w in self.workers)

    def rss_mb(self) -> float:
        return sum(rss_mb(w.proc.pid) for w in self.workers)

    def stop(self) -> None:
        for w in self.workers:
            w.stop()


# `vigil` arguments of each process per mode. `split` runs every role of `vigil run` (the
# console's feed and the web UI aside) in three processes, so the post path's event loop
# (intake, decide) does not share a GIL with classify's or burst's: same roles, same policy.
LAYOUTS: dict[str, list[list[str]]] = {
    "run": [["run"]],
    "no-classify": [["worker", "--agents", "intake,hashing,decide"]],
    "split": [["worker", "--agents", "intake,decide,notify,forum_webhook"],
              ["worker", "--agents", "classify"],
              ["worker", "--agents", "hashing,burst"]],
}


async def sample_rss(state: State, fleet: Fleet, broker: Any, interval: float) -> None:
    last = (time.monotonic(), fleet.cpu(), cpu_seconds(broker.pid))
    while True:
        now = (time.monotonic(), fleet.cpu(), cpu_seconds(broker.pid))
        dt = (now[0] - last[0]) or 1.0
        state.samples.append(Sample(now[0] - state.t0, state.phase, fleet.rss_mb(),
                                    broker.rss_bytes() / MIB, os.getloadavg()[0],
                                    (now[1] - last[1]) / dt, (now[2] - last[2]) / dt))
        last = now
        await asyncio.sleep(interval)


async def rtt_sampler(bootstrap: str, out: list[tuple[float, float]]) -> None:
    """The broker's round trip under load: one record every 0.5 s on a topic of its own
    (aiokafka, 50 ms fetch wait, as `bench.decide.round_trip`); (send time, seconds)."""
    topic = f"rtl{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                fetch_max_wait_ms=50, enable_auto_commit=False)
    await producer.start()
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 0)])
        await consumer.seek_to_end()
        i = 0
        while True:
            value = str(i).encode()
            sent = time.monotonic()
            await producer.send(topic, value, partition=0)
            while time.monotonic() - sent < 10:
                batch = await consumer.getmany(timeout_ms=1000)
                if any(r.value == value for rs in batch.values() for r in rs):
                    out.append((sent, time.monotonic() - sent))
                    break
            i += 1
            await asyncio.sleep(0.5)
    finally:
        await consumer.stop()
        await producer.stop()


async def warm_up(traffic: Traffic, collector: Collector, timeout: float = 180.0) -> float:
    """Send a post and an image every 0.2 s until both kinds get verdicts (groups joined,
    models loaded); return seconds taken."""
    started = time.monotonic()
    i = 0
    while not (collector.warm["post"] and collector.warm["image"]):
        if time.monotonic() - started > timeout:
            raise RuntimeError("no verdict for the warm-up events: see the vigil log")
        for kind in ("post", "image"):
            cid = await traffic.send("warm", kind=kind, tag="warm")
            traffic.sent.pop(cid, None)
        i += 1
        await asyncio.sleep(0.2)
    return time.monotonic() - started


async def settle(traffic: Traffic, collector: Collector, state: State, deadline_s: float,
                 timeout: float = 120.0) -> float:
    """Wait until the pipeline has no backlog; return seconds waited.

    A phase's verdicts can all be out while a detector still has a backlog (decide holds at
    its deadline and the late signals are dropped), which the next phase would inherit. So:
    canaries (12 posts on distinct threads, 2 images) until all get a verdict within 1 s that
    is not a deadline hold. Canaries are inputs like any other (phase `settle`).
    """
    state.phase, started = "settle", time.monotonic()
    while time.monotonic() - started < timeout:
        ids = [await traffic.send("settle", kind="post") for _ in range(12)]
        ids += [await traffic.send("settle", kind="image") for _ in range(2)]
        await traffic.producer.flush()
        await collector.wait_for(ids, timeout=1.0)
        lat = collector.latencies(ids)
        if len(lat) == len(ids) and not any(c in collector.deadline_holds for c in ids):
            return time.monotonic() - started
        await collector.wait_for(ids, timeout=deadline_s + 2)
        await asyncio.sleep(1.0)
    print(f"  [settle] still a backlog after {timeout:.0f} s", flush=True)
    return time.monotonic() - started


#: "Idle" for a capacity probe: Vigil's CPU over one second below this share of a core.
IDLE_CPU = 0.25


async def quiesce(cpu: Callable[[], float], timeout: float = 90.0) -> tuple[float, float]:
    """Wait until Vigil is idle (`IDLE_CPU`); return (seconds waited, last share of a core).

    The canaries of `settle` answer once the verdict path has caught up, but a probe before
    has left work that nobody waits on: images past their deadline still being classified
    (nice +10 threads), burst reading what it deferred (docs/burst.md, "Verdicts first"). A
    capacity probe starts from an idle pipeline, as the baseline starts from an idle broker."""
    started = time.monotonic()
    share = float("nan")
    while time.monotonic() - started < timeout:
        before = cpu()
        await asyncio.sleep(1.0)
        share = cpu() - before
        if share < IDLE_CPU:
            break
    return time.monotonic() - started, share


@dataclass
class Probe:
    events: int
    post_rate: float | None
    input_rate: float | None
    deadline_holds: int
    missing: int
    #: Vigil's CPU seconds per input of the burst (burst start → every verdict in): the
    #: efficiency figure a shared box disturbs far less than the rates.
    cpu_per_input: float | None = None


async def probe(traffic: Traffic, collector: Collector, state: State, deadline_s: float,
                size: int | None = None, phase: str = "probe",
                cpu: Callable[[], float] | None = None) -> Probe:
    """A burst produced as fast as possible; the drain rates of its verdicts.

    Sized (from a 500-event first burst) so that its *posts* drain in ≈ 4 s, within decide's
    deadline: verdicts given at the deadline (holds) measure decide's timer, not the detectors,
    so they are left out of the rates and counted. Sized by posts, not by all inputs: with every
    role, images drain ≈ 100× slower than posts (open_nsfw), and a burst sized by them holds
    too few posts (a few hundred, < 1 s of drain) to measure the post path.
    """
    if size is None:
        first = await probe(traffic, collector, state, deadline_s, 500, f"{phase}-small")
        await settle(traffic, collector, state, deadline_s)
        guess = (first.post_rate or 450.0) / dict(traffic.mix)["post"]
        size = int(min(max(guess * 4, 500), 40_000))
    state.phase = phase
    cpu0 = cpu() if cpu else 0.0
    await traffic.burst(phase, size)
    ids = traffic.ids(phase)
    await collector.wait_for(ids, timeout=deadline_s + 60)
    cpu_per_input = (cpu() - cpu0) / (len(ids) + traffic.reports[phase]) if cpu and ids else None
    holds = collector.deadline_holds

    def rate(kind: str | None) -> float | None:
        return drain_rate([collector.arrived[c] for c in traffic.ids(phase, kind)
                           if c in collector.arrived and c not in holds])

    post_rate, all_rate = rate("post"), rate(None)
    # Reports are produced but get no verdict: inputs/s = verdicts/s ÷ their share.
    verdict_share = 1 - dict(traffic.mix)["report"]
    input_rate = all_rate / verdict_share if all_rate else None
    held = sum(1 for c in ids if c in holds)
    missing = sum(1 for c in ids if c not in collector.arrived)
    return Probe(size, post_rate, input_rate, held, missing, cpu_per_input)


@dataclass
class Step:
    rate: float
    produced: int
    arrived_share: float
    p99: float
    early_p50: float
    late_p50: float
    holds: int
    ok: bool

    def describe(self) -> str:
        return (f"{self.rate:,.0f} events/s for {STEP_S:.0f} s: {self.arrived_share:.1%} of "
                f"verdicts within 2 s, p99 {self.p99 * 1000:,.0f} ms, p50 first/last second "
                f"{self.early_p50 * 1000:,.0f}/{self.late_p50 * 1000:,.0f} ms, {self.holds} "
                f"deadline holds -> {'sustainable' if self.ok else 'too fast'}")


STEP_S = 6.0


async def find_rate(traffic: Traffic, collector: Collector, state: State, start: float,
                    max_p99: float, deadline_s: float) -> tuple[float, list[Step]]:
    """Steps of `STEP_S` from `start` down by 0.85× until one is sustainable.

    Sustainable: ≥ 99 % of the step's verdicts within 2 s of its end, p99 ≤ `max_p99`, ≤ 1 %
    deadline holds, and no growing queue (p50 of the last second's inputs ≤ 1.5 × that of the
    first second's + 100 ms). Each step starts on a settled pipeline.
    """
    steps: list[Step] = []
    rate = start
    for i in range(8):
        await settle(traffic, collector, state, deadline_s)
        phase = f"step{i}"
        state.phase = phase
        begun = time.monotonic()
        produced = await traffic.steady(phase, rate, STEP_S)
        ids = traffic.ids(phase)
        await collector.wait_for(ids, timeout=2.0)
        lat = collector.latencies(ids)
        sent = traffic.sent
        early = collector.latencies([c for c in ids if sent[c].at < begun + 1])
        late = collector.latencies([c for c in ids if sent[c].at >= begun + STEP_S - 1])
        share = len(lat) / len(ids) if ids else 0.0
        p99 = pct(lat, 99) if len(lat) >= 2 else float("inf")
        e50 = statistics.median(early) if early else float("inf")
        l50 = statistics.median(late) if late else float("inf")
        holds = sum(1 for c in ids if c in collector.deadline_holds)
        ok = (share >= 0.99 and p99 <= max_p99 and holds <= 0.01 * len(ids)
              and l50 <= 1.5 * e50 + 0.1)
        step = Step(rate, produced, share, p99, e50, l50, holds, ok)
        steps.append(step)
        print(f"  [auto] {step.describe()}", flush=True)
        if ok:
            return rate, steps
        await collector.wait_for(ids, timeout=deadline_s + 20)
        rate *= 0.85
    return rate / 0.85, steps


# --------------------------------------------------------------------------------------------
# Main


def ms(values: list[float], q: int) -> str:
    return f"{pct(values, q) * 1000:,.0f}" if len(values) >= 2 else "-"


def scan_log(path: Path) -> tuple[Counter[str], list[str]]:
    counts: Counter[str] = Counter()
    firsts: list[str] = []
    if not path.exists():
        return counts, firsts
    for line in path.read_text(errors="replace").splitlines():
        for word in ("CRITICAL", "ERROR", "Traceback", "WARNING"):
            if word in line:
                counts[word] += 1
                if word != "WARNING" and len(firsts) < 8 and line not in firsts:
                    firsts.append(line[:240])
                break
    return counts, firsts


async def count_topic(bootstrap: str, topic: str, partitions: int) -> Counter[str]:
    """Events on `topic` by `data.kind` (alerts), read to the end (no group)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, fetch_max_wait_ms=50)
    await consumer.start()
    kinds: Counter[str] = Counter()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        await consumer.seek_to_beginning()
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < 1.5:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                quiet_since = time.monotonic()
                for r in records:
                    assert r.value is not None
                    kinds[str(orjson.loads(r.value)["data"].get("kind"))] += 1
    finally:
        await consumer.stop()
    return kinds


async def main_async(args: argparse.Namespace) -> None:
    load_start = load_average()
    print(f"load average at start: {load_start} (2 cores); mode: {args.mode}"
          f"{'; ' + ' '.join(args.vigil_env) if args.vigil_env else ''}", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="vigil-bench-load-"))
    broker = load_embedded_broker()().start()
    bootstrap = broker.bootstrap
    fleet: Fleet | None = None
    tasks: list[asyncio.Task[None]] = []
    try:
        # 1. References, on the idle broker.
        pt_args = argparse.Namespace(events=args.baseline_events, size=1024,
                                     partitions=args.partitions, startup_cap=90.0)
        baseline = await run_case(CASES_BY_NAME["baseline"], bootstrap, pt_args, workdir)
        ceilings = [await run_case(CASES_BY_NAME["ceiling"], bootstrap, pt_args, workdir)
                    for _ in range(2)]
        base = baseline.rate or float("nan")
        ceil = max((c.rate or 0.0) for c in ceilings) or float("nan")
        rtt = await round_trip(bootstrap)
        print(f"baseline {base:,.0f} events/s, ceiling {ceil:,.0f} events/s, round trip p50 "
              f"{pct(rtt, 50) * 1000:.1f} ms p99 {pct(rtt, 99) * 1000:.1f} ms", flush=True)

        # 2. Vigil.
        prefix = f"ld{uuid.uuid4().hex[:8]}."
        await ensure_topics(bootstrap, prefix=prefix, partitions=args.partitions, replication=1)
        env = worker_env(bootstrap, prefix, workdir)
        env["VIGIL_TOPIC_PARTITIONS"] = str(args.partitions)
        env.update(item.split("=", 1) for item in args.vigil_env)  # e.g. a setting under test
        if args.mode == "split":  # every role: the shipped policy, as `vigil run` has
            env["VIGIL_POLICY"] = str(Path(agents.policy.__file__).parent / "default.toml")
        if args.small_caps:
            env.update(SMALL_CAPS_ENV)
            if args.mode != "no-classify":
                env["VIGIL_POLICY"] = str(small_caps_policy(workdir))
        spawned = time.monotonic()
        fleet = Fleet([])
        for n, vigil_args in enumerate(LAYOUTS[args.mode]):
            data_dir = workdir / prefix / str(n)
            fleet.workers.append(start_vigil(vigil_args, {
                **env, "VIGIL_DATA_DIR": str(data_dir), "VIGIL_APP_ID": f"vigil{n}",
                "VIGIL_WEB_PORT": str(free_port()) if n else env["VIGIL_WEB_PORT"],
            }, data_dir))
        for worker in fleet.workers:
            await asyncio.to_thread(wait_ready, worker, 120.0)
        ready_s = time.monotonic() - spawned
        deadline_s = int(env.get("VIGIL_DECIDE_DEADLINE_MS", "5000")) / 1000

        state = State()
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
        await producer.start()
        traffic = Traffic(producer, prefix)
        if args.small_caps:
            traffic.threads = traffic.authors = SMALL_CAPS_FORUM
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                    enable_auto_commit=False, fetch_max_wait_ms=50,
                                    max_partition_fetch_bytes=8 * MIB)
        await consumer.start()
        verdicts = VERDICTS.full_name(prefix)
        consumer.assign([TopicPartition(verdicts, p) for p in range(args.partitions)]
                        + [TopicPartition(DEADLETTER.full_name(prefix), 0)])
        await consumer.seek_to_beginning()
        collector = Collector(consumer, traffic, verdicts)
        tasks.append(asyncio.create_task(collector.run()))
        tasks.append(asyncio.create_task(
            sample_rss(state, fleet, broker, args.rss_interval)))
        rtt_load: list[tuple[float, float]] = []
        tasks.append(asyncio.create_task(rtt_sampler(bootstrap, rtt_load)))
        state.phase = "warm"
        warm_s = await warm_up(traffic, collector)
        await asyncio.sleep(1.0)
        print(f"vigil ready in {ready_s:.1f} s, first verdicts after {warm_s:.1f} s more",
              flush=True)

        # 3. Capacity probe and rate.
        cap: Probe | None = None
        if (not args.no_probe and args.probes != "posts") or args.rate == "auto":
            cap = await probe(traffic, collector, state, deadline_s, args.probe_size or None,
                              cpu=fleet.cpu)
            print(f"capacity probe: {cap.events} events burst, posts {cap.post_rate or 0:,.0f} "
                  f"verdicts/s, inputs {cap.input_rate or 0:,.0f}/s, {cap.deadline_holds} "
                  f"deadline holds, {cap.missing} missing", flush=True)
        posts_cap: Probe | None = None
        if not args.no_probe and args.probes != "mixed":  # posts only, on a settled pipeline
            await settle(traffic, collector, state, deadline_s)
            idle_s, share = await quiesce(fleet.cpu)
            print(f"  [quiesce] vigil idle ({share:.0%} of a core) after {idle_s:.1f} s",
                  flush=True)
            traffic.mix = POSTS_ONLY
            # Sized from the mixed probe's post rate (≈ 4 s of posts): a 500-post first burst
            # drains in one or two batches, and its rate overstates the capacity many times.
            size = args.probe_size or int(min(max(
                4 * (cap.post_rate if cap and cap.post_rate else 450.0), 500), 40_000))
            posts_cap = await probe(traffic, collector, state, deadline_s, size, "probe-posts",
                                    cpu=fleet.cpu)
            traffic.mix = MIX
            print(f"posts-only probe: {posts_cap.events} events burst, posts "
                  f"{posts_cap.post_rate or 0:,.0f} verdicts/s, {posts_cap.deadline_holds} "
                  f"deadline holds, {posts_cap.missing} missing", flush=True)
        steps: list[Step] = []
        found = 0.0
        if args.rate == "auto":
            assert cap is not None
            found, steps = await find_rate(traffic, collector, state,
                                           0.8 * (cap.input_rate or 500.0), args.max_p99,
                                           deadline_s)
            rate = args.headroom * found
        else:
            rate = float(args.rate)

        # 4. Sustained run, on a settled pipeline.
        await settle(traffic, collector, state, deadline_s)
        state.phase = "sustained"
        assert broker.pid is not None
        cpu0, bcpu0, own0 = (fleet.cpu(), cpu_seconds(broker.pid),
                             time.process_time())
        t_start = time.monotonic()
        produced = await traffic.steady("sustained", rate, args.seconds)
        produce_s = time.monotonic() - t_start
        cpu_sustained = fleet.cpu() - cpu0
        broker_cpu = cpu_seconds(broker.pid) - bcpu0
        own_cpu = time.process_time() - own0
        state.phase = "drain"
        all_ids = [c for c, s in traffic.sent.items()]
        await collector.wait_for(all_ids, timeout=args.drain_seconds)
        await asyncio.sleep(1.0)  # late duplicates
        state.phase = "end"
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        tasks.clear()
        await consumer.stop()
        await producer.stop()
        unanswered = {c for c in traffic.sent if c not in collector.arrived}
        found_again = (await reread(bootstrap, prefix, args.partitions, unanswered)
                       if unanswered else set())
        alerts = await count_topic(bootstrap, ALERTS.full_name(prefix), args.partitions)
        vigil_cpu_total = fleet.cpu()
    finally:
        for task in tasks:
            task.cancel()
        if fleet is not None:
            await asyncio.to_thread(fleet.stop)
        broker_final = broker.rss_bytes() / MIB
        rtt_after: list[float] = []
        if fleet is not None and broker_final:
            with contextlib.suppress(Exception):
                rtt_after = await round_trip(bootstrap, samples=100)
        broker.stop()

    # ----------------------------------------------------------------------------- report
    log_counts, log_lines = Counter[str](), []
    for worker in fleet.workers:
        counts, lines = scan_log(worker.log_path)
        log_counts.update(counts)
        log_lines += lines
    sent = traffic.sent
    s_posts = traffic.ids("sustained", "post")
    s_images = traffic.ids("sustained", "image")
    post_lat = collector.latencies(s_posts)
    image_lat = collector.latencies(s_images)
    post_stamps = [collector.arrived[c] for c in s_posts if c in collector.arrived]
    sustained_post_rate = (len(post_stamps) / (max(post_stamps) - min(post_stamps))
                           if len(post_stamps) > 1 else float("nan"))
    by_phase: dict[str, Counter[str]] = {}
    for cid, s in sent.items():
        c = by_phase.setdefault(s.phase, Counter())
        c[f"{s.kind}s"] += 1
        c["missing"] += cid not in collector.arrived
        c["deadline holds"] += cid in collector.deadline_holds
    mix = Counter((sent[c].kind, v) for c, v in collector.verdict_of.items())
    rtt50, rtt99 = pct(rtt, 50), pct(rtt, 99)
    what = {"run": "`vigil run` (all roles, shipped policy)",
            "no-classify": "`vigil worker --agents intake,hashing,decide` (policy without "
                           "classify)",
            "split": "every role in 3 processes: " + "; ".join(
                " ".join(a) for a in LAYOUTS["split"]) + " (shipped policy)"}[args.mode]

    print()
    print(f"== bench.load: {what}, embedded Tansu, {args.partitions} partitions ==")
    print(f"load average: start {load_start}; end {load_average()} (2 cores)")
    print(f"references (idle broker): default faust pass-through baseline {base:,.0f} events/s; "
          f"aiokafka ceiling {ceil:,.0f} events/s (best of 2); broker round trip p50 "
          f"{rtt50 * 1000:.1f} ms, p99 {rtt99 * 1000:.1f} ms")
    if cap is not None:
        pr = cap.post_rate or float("nan")
        print(f"capacity (burst of {cap.events} mixed events, drained): posts {pr:,.0f} "
              f"verdicts/s = {pr / base:.2f}x baseline, {pr / ceil:.3f}x ceiling; all inputs "
              f"{cap.input_rate or 0:,.0f}/s; {cap.deadline_holds} deadline holds")
    if posts_cap is not None:
        pr = posts_cap.post_rate or float("nan")
        print(f"capacity (burst of {posts_cap.events} posts and 2 % reports, drained): posts "
              f"{pr:,.0f} verdicts/s = {pr / base:.2f}x baseline, {pr / ceil:.3f}x ceiling; "
              f"{posts_cap.deadline_holds} deadline holds  <- issue 9's posts target (>= 1.0x)")
    base_cpu = baseline.cpu_per_event
    for label, p in (("mixed", cap), ("posts-only", posts_cap)):
        if p is not None and p.cpu_per_input and base_cpu:
            print(f"  CPU per input, {label} burst: vigil {p.cpu_per_input * 1e6:,.0f} us (every "
                  f"role) vs baseline {base_cpu * 1e6:,.0f} us per event = "
                  f"{base_cpu / p.cpu_per_input:.2f}x the baseline's efficiency")
    for st in steps:
        print(f"  auto step: {st.describe()}")
    how = (f"auto: {args.headroom:g} x the {found:,.0f}/s found sustainable for {STEP_S:.0f} s"
           if args.rate == "auto" else "fixed")
    print(f"sustained: {rate:,.0f} events/s target ({how}),"
          f" {produced} events in {produce_s:.1f} s ({produced / produce_s:,.0f}/s): "
          f"{len(s_posts)} posts, {len(s_images)} images, {traffic.reports['sustained']} reports")
    print(f"  posts end to end: {sustained_post_rate:,.0f} verdicts/s = "
          f"{sustained_post_rate / base:.2f}x baseline, {sustained_post_rate / ceil:.3f}x ceiling")
    print(f"  post -> verdict  ({len(post_lat)}): p50 {ms(post_lat, 50)} ms, p99 "
          f"{ms(post_lat, 99)} ms")
    print(f"  image -> verdict ({len(image_lat)}): p50 {ms(image_lat, 50)} ms, p99 "
          f"{ms(image_lat, 99)} ms")
    t_first = min((sent[c].at for c in s_posts + s_images), default=0.0)
    buckets: dict[int, list[str]] = {}
    for c in s_posts + s_images:
        buckets.setdefault(int((sent[c].at - t_first) // args.timeline), []).append(c)
    rtt_buckets: dict[int, list[float]] = {}
    for at, secs in rtt_load:
        if at >= t_first:
            rtt_buckets.setdefault(int((at - t_first) // args.timeline), []).append(secs)
    print(f"  over time (by produce time, {args.timeline:.0f} s buckets): post p50 / p99 ms, "
          "image p50 ms, deadline holds, broker round trip p50 / max ms (2 samples/s)")
    for b, ids in sorted(buckets.items()):
        pl = collector.latencies([c for c in ids if sent[c].kind == "post"])
        il = collector.latencies([c for c in ids if sent[c].kind == "image"])
        held = sum(1 for c in ids if c in collector.deadline_holds)
        rt = rtt_buckets.get(b, [])
        rts = (f"{statistics.median(rt) * 1000:,.0f} / {max(rt) * 1000:,.0f}" if rt else "-")
        print(f"    {b * args.timeline:5.0f}s  {ms(pl, 50):>6} / {ms(pl, 99):>6}   "
              f"{ms(il, 50):>6}   {held:>4}   {rts}")
    if len(post_lat) >= 2:
        p99 = pct(post_lat, 99)
        print(f"  post p99 / round-trip p99 = {p99 / rtt99:.1f}x; post p99 / round-trip p50 = "
              f"{p99 / rtt50:.1f}x (target <= 20x; round trip on the idle broker, before)")
    sus_rt = [secs for at, secs in rtt_load if t_first <= at <= t_first + produce_s]
    print(f"  broker round trip during the sustained phase ({len(sus_rt)} samples): p50 "
          f"{ms(sus_rt, 50)} ms, p99 {ms(sus_rt, 99)} ms; after (idle, vigil stopped, "
          f"{len(rtt_after)} samples): p50 {ms(rtt_after, 50)} ms, p99 {ms(rtt_after, 99)} ms")
    print(f"  CPU over the sustained phase (share of one core): vigil "
          f"{cpu_sustained / produce_s:.0%} ({cpu_sustained / max(produced, 1) * 1e6:,.0f} us "
          f"per input event), broker {broker_cpu / produce_s:.0%}, this load generator "
          f"{own_cpu / produce_s:.0%}")
    print("accounting (posts + images; reports get no verdict):")
    for phase, c in by_phase.items():
        print(f"  {phase:<12} posts {c['posts']:>7}  images {c['images']:>6}  reports "
              f"{traffic.reports[phase]:>5}  missing {c['missing']:>5}  deadline holds "
              f"{c['deadline holds']:>5}")
    total = len(sent)
    missing = sum(1 for c in sent if c not in collector.arrived)
    print(f"  total: {total} inputs, {total - missing} verdicts, {missing} missing "
          f"({'zero lost' if missing == 0 else 'LOST/LATE'}); {collector.duplicates} duplicate "
          f"verdicts, {collector.unknown} unknown, {len(collector.deadletters)} dead letters; "
          f"{traffic.failures} produce failures")
    if missing:
        absent = sorted(unanswered - found_again)
        print(f"  after the drain, verdicts and dead letters read again from the beginning: "
              f"{len(found_again)} of the {missing} missing found there (the collector missed "
              f"them), {len(absent)} have none (first: {absent[:5]})")
    if collector.deadletters:
        print(f"  dead-letter reasons: {Counter(collector.deadletters).most_common(3)}")
    print("  verdicts: " + ", ".join(f"{k} {v}: {n}" for (k, v), n in sorted(mix.items())))
    print(f"  alerts on safety.alerts.v1: {dict(alerts) or 'none'}")
    print(f"memory (every {args.rss_interval:.0f} s; MB):")
    print("     t  phase        vigil  broker  load1   CPU% vigil broker (since previous)")
    for s in state.samples:
        print(f"  {s.t:5.0f}  {s.phase:<11} {s.vigil_mb:6.0f}  {s.broker_mb:6.0f}  {s.load1:5.2f}"
              f"        {s.vigil_cpu:6.0%} {s.broker_cpu:6.0%}")
    sus = [s for s in state.samples if s.phase == "sustained"]
    v_slope, b_slope = slope_mb_per_min(sus, "vigil_mb"), slope_mb_per_min(sus, "broker_mb")
    mb_min = (traffic.bytes_out / MIB) / (produce_s / 60) if produce_s else 0.0
    fmt = lambda x: "-" if x is None else f"{x:+.1f}"
    if v_slope is not None and produce_s:
        per_event = v_slope * 1024 / (produced / produce_s * 60)
        print(f"  vigil grows {per_event:.1f} KB per input event (bounded windows fill: decide "
              "remembers 200k decided contents, burst keeps 30 min of posts/images up to 50k, "
              "hashing 200k recent images)")
    print(f"  slope over the sustained phase: vigil {fmt(v_slope)} MB/min, broker "
          f"{fmt(b_slope)} MB/min (inputs written ≈ {mb_min:.1f} MB/min; Tansu keeps every "
          f"record in memory); broker at the end {broker_final:.0f} MB; vigil CPU total "
          f"{vigil_cpu_total:.0f} s")
    if produce_s >= 600:  # a leak check: the growth per 5 minutes, last ones last
        print("  per 5 min of the sustained phase (MB at the end, least-squares slope per 5 min; "
              "mean CPU share of one core):")
        cut = windows(sus)
        for window in cut:
            v5, b5 = (slope_mb_per_min(window, "vigil_mb"), slope_mb_per_min(window, "broker_mb"))
            print(f"    {window[0].t:5.0f}-{window[-1].t:5.0f} s  vigil {window[-1].vigil_mb:6.0f} "
                  f"({fmt(None if v5 is None else v5 * 5)})  broker {window[-1].broker_mb:6.0f} "
                  f"({fmt(None if b5 is None else b5 * 5)})  CPU vigil "
                  f"{statistics.fmean(s.vigil_cpu for s in window):.0%} broker "
                  f"{statistics.fmean(s.broker_cpu for s in window):.0%}")
        last = [s for window in cut[-2:] for s in window]
        v_last = slope_mb_per_min(last, "vigil_mb")
        print(f"  leak check, the last {len(cut[-2:]) * 5} min: vigil "
              f"{fmt(None if v_last is None else v_last * 5)} MB per 5 min "
              f"({last[0].vigil_mb:.0f} -> {last[-1].vigil_mb:.0f} MB)" if last else
              "  leak check: no full 5-minute window")
    print(f"vigil logs ({', '.join(str(w.log_path) for w in fleet.workers)}): "
          f"{dict(log_counts) or 'no warnings or errors'}")
    for line in log_lines:
        print(f"  {line}")
    if args.keep:
        print(f"kept {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.load",
                                     description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--mode", choices=list(LAYOUTS), default="run",
                        help="`vigil run` (all roles), `vigil worker --agents "
                             "intake,hashing,decide` with a policy without classify, or every "
                             "role in three worker processes (LAYOUTS)")
    parser.add_argument("--seconds", type=float, default=120.0, help="sustained phase length")
    parser.add_argument("--rate", default="auto",
                        help="events/s of the sustained phase, or `auto` (probe, then steps)")
    parser.add_argument("--max-p99", type=float, default=1.0,
                        help="auto: a step is sustainable if its p99 is at most this (s)")
    parser.add_argument("--headroom", type=float, default=0.5,
                        help="auto: the sustained phase runs at this share of the rate found "
                             "sustainable in a short step (a short step misses slow queue growth)")
    parser.add_argument("--no-probe", action="store_true",
                        help="with a fixed --rate, skip the capacity probe")
    parser.add_argument("--vigil-env", action="append", default=[], metavar="VIGIL_X=VALUE",
                        help="a setting for the Vigil processes (repeatable)")
    parser.add_argument("--probes", choices=["both", "mixed", "posts"], default="both",
                        help="which capacity probes run (posts: the post path alone, e.g. for "
                             "an A/B of it with --probe-size and a long decide deadline)")
    parser.add_argument("--probe-size", type=int, default=0,
                        help="events in the capacity burst (0: sized to drain posts in ≈ 4 s)")
    parser.add_argument("--drain-seconds", type=float, default=30.0,
                        help="after the sustained phase, wait this long for late verdicts")
    parser.add_argument("--rss-interval", type=float, default=5.0)
    parser.add_argument("--timeline", type=float, default=10.0,
                        help="latency over time: bucket width (s) of the sustained phase")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--baseline-events", type=int, default=20_000)
    parser.add_argument("--small-caps", action="store_true",
                        help="lower Vigil's memory bounds (SMALL_CAPS_ENV, SMALL_CAPS_POLICY) and "
                             "the forum's threads and authors (SMALL_CAPS_FORUM) so that a "
                             "30-minute run at ≈ 10 events/s fills them: the leak check")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs)")
    args = parser.parse_args()
    if args.rate != "auto":
        float(args.rate)
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()

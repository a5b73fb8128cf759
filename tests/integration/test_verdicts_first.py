"""Verdicts first, through the broker: in one process with the verdict path, burst waits while
a backlog of posts is answered (`vigil_deferred_seconds_total`), then still detects the raid
hidden in it, once, and every post gets its verdict."""

from __future__ import annotations

import asyncio
import random
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from streams.topics import ALERTS, POSTS, VERDICTS
from tests.integration.helpers import (
    OLD,
    assert_one_incident,
    at,
    collect,
    forum_post,
    http,
    member,
    produce,
    resolved,
    running,
    topic,
    unique_prefix,
    vigil_env,
)
from vigil.broker import EmbeddedBroker

pytestmark = pytest.mark.integration
BACKLOG = 6000  # ordinary posts, ≈ 1–2 s of intake + decide: burst's loop has to wait
WORDS = [f"word{i}" for i in range(400)]


def inputs() -> list[bytes]:
    rng = random.Random(9)
    two_days_old = at(0) - timedelta(days=2)

    def body() -> str:  # unrelated texts: no text brigade
        return " ".join(rng.choices(WORDS, k=12))

    # Ordinary members on many threads over 10 minutes, and in the middle of it a raid: 40
    # posts in 3 minutes from 8 accounts two days old (test_burst_thread_raid's).
    events = [(i * 600 / BACKLOG, f"t{i % 3000}", f"old{i % 997}", OLD) for i in range(BACKLOG)]
    events += [(240 + i * 4.5, "t-raid", f"young-r{i % 8}", two_days_old) for i in range(40)]
    events.sort(key=lambda e: e[0])
    posts = [forum_post(f"p{n}", thread, "b1", member(author, created), body(), at(when))[1]
             for n, (when, thread, author, created) in enumerate(events)]
    # An hour later: the watermark moves on and the raid resolves.
    return posts + [forum_post("p-marker", "t-marker", "b1", member("old-m"), body(),
                               at(4200))[1]]


def test_burst_yields_to_a_backlog_of_verdicts_and_still_catches_the_raid(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    # One partition: the marker an hour later is then read after every post of the raid.
    env = vigil_env(broker.url, unique_prefix(), tmp_path, VIGIL_TOPIC_PARTITIONS="1")
    posts = inputs()

    async def go(worker: Any) -> tuple[list[dict[str, Any]], set[str], float]:
        await produce(broker.bootstrap, topic(worker, POSTS), posts)
        verdicts = await collect(broker.bootstrap, topic(worker, VERDICTS),
                                 lambda events: len({e["data"]["content_id"]
                                                     for e in events}) >= len(posts),
                                 timeout=180)
        alerts = await collect(broker.bootstrap, topic(worker, ALERTS),
                               resolved("thread_raid", "t-raid"), timeout=120)
        _, body = await asyncio.to_thread(http, "GET", worker.url("/metrics"))
        found = re.search(r'vigil_deferred_seconds_total\{loop="burst"\} ([0-9.e+-]+)',
                          body.decode())
        assert found, "no vigil_deferred_seconds_total for burst's loop"
        return alerts, {e["data"]["content_id"] for e in verdicts}, float(found.group(1))

    with running(["worker", "--agents", "intake,decide,burst"], env, tmp_path) as worker:
        alerts, decided, deferred = asyncio.run(go(worker))

    assert len(decided) == len(posts)  # every post answered
    data = assert_one_incident(alerts, "thread_raid")  # the raid, once, and resolved
    assert {d["target"]["id"] for d in data} == {"t-raid"}
    assert data[-1]["count"] == 40
    assert deferred > 0.0  # burst waited for intake and decide to catch up

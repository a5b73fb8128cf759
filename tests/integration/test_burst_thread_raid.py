"""`thread_raid` through the broker: a raid by young accounts fires once, busy threads do not."""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.integration.helpers import (
    OLD,
    assert_one_incident,
    at,
    forum_post,
    member,
    resolved,
    run_burst,
    same_alerts,
)
from vigil.broker import EmbeddedBroker

pytestmark = pytest.mark.integration
WORDS = [f"word{i}" for i in range(400)]


def inputs() -> list[Any]:
    rng = random.Random(6)
    two_days_old = at(0) - timedelta(days=2)  # young for a raid (< 7 days), not for a swarm

    def body() -> str:  # unrelated texts: no text brigade
        return " ".join(rng.choices(WORDS, k=12))

    events = []
    # Normal: a quiet thread; a busy thread of established members (30 posts in 4 min:
    # over the floor, but nobody young); three young accounts chatting (too few authors).
    events += [(i * 40, "t-quiet", f"old-q{i % 4}", None) for i in range(8)]
    events += [(i * 8, "t-busy", f"old-b{i % 10}", None) for i in range(30)]
    events += [(i * 10, "t-young-few", f"young-f{i % 3}", two_days_old) for i in range(24)]
    # The raid: 40 posts in 3 minutes from 8 accounts two days old.
    events += [(60 + i * 4.5, "t-raid", f"young-r{i % 8}", two_days_old) for i in range(40)]
    events.sort(key=lambda e: e[0])
    posts = [forum_post(f"p{n}", thread, "b1", member(author, created or OLD),
                        body(), at(when))
             for n, (when, thread, author, created) in enumerate(events)]
    # An hour later: the watermark moves on and the raid resolves.
    return posts + [forum_post("p-marker", "t-marker", "b1", member("old-m"), body(), at(3600))]


@pytest.fixture(scope="module")
def first_run(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory
              ) -> list[dict[str, Any]]:
    return run_burst(broker.url, broker.bootstrap, tmp_path_factory.mktemp("raid"), inputs(),
                     resolved("thread_raid", "t-raid"))


def test_a_raid_fires_once_and_busy_or_small_threads_do_not(first_run: list[Any]) -> None:
    data = assert_one_incident(first_run, "thread_raid")
    assert {d["target"]["id"] for d in data} == {"t-raid"}
    opened = data[0]
    assert opened["count"] >= 8 and opened["evidence"]["young_authors"] == 8  # floor 8
    assert opened["first_seen"].startswith("2025-02-04T14:01:00")
    assert data[-1]["count"] == 40


def test_replay_on_a_fresh_worker_gives_the_same_alerts(
    first_run: list[Any], broker: EmbeddedBroker, tmp_path: Path
) -> None:
    again = run_burst(broker.url, broker.bootstrap, tmp_path, inputs(),
                      resolved("thread_raid", "t-raid"))
    same_alerts(first_run, again)

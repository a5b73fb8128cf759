"""`new_account_swarm` through the broker: many fresh accounts on one board fire once; a few
fresh accounts, one chatty fresh account, or a busy board of members do not."""

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
    rng = random.Random(7)
    fresh = at(0) - timedelta(hours=2)  # younger than the swarm's 24 h

    def body() -> str:
        return " ".join(rng.choices(WORDS, k=12))

    events = []
    # Normal: four fresh accounts five minutes apart and one fresh account posting ten times
    # on b-calm (five, floor 6; never three within a span improbable at the prior rate of
    # 0.5 an hour), thirty established members on b-busy.
    events += [(i * 300, "b-calm", f"fresh-c{i}", fresh) for i in range(4)]
    events += [(5 + i * 30, "b-calm", "fresh-chatty", fresh) for i in range(10)]
    events += [(i * 10, "b-busy", f"old-b{i}", None) for i in range(30)]
    # The swarm: twelve accounts two hours old, one post each, within six minutes; the third
    # (at 3 min) opens it: three newcomers within a minute (the scan test, p ≈ 3e-5).
    events += [(120 + i * 30, "b-swarm", f"fresh-s{i}", fresh) for i in range(12)]
    events.sort(key=lambda e: e[0])
    posts = [forum_post(f"p{n}", f"t{n}", board, member(author, created or OLD), body(),
                        at(when)) for n, (when, board, author, created) in enumerate(events)]
    return posts + [forum_post("p-marker", "t-marker", "b-calm", member("old-m"), body(),
                               at(3600))]


@pytest.fixture(scope="module")
def first_run(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory
              ) -> list[dict[str, Any]]:
    return run_burst(broker.url, broker.bootstrap, tmp_path_factory.mktemp("swarm"), inputs(),
                     resolved("new_account_swarm", "b-swarm"))


def test_a_swarm_fires_once_and_ordinary_boards_do_not(first_run: list[Any]) -> None:
    data = assert_one_incident(first_run, "new_account_swarm")
    assert {d["evidence"]["board"] for d in data} == {"b-swarm"}
    assert data[0]["count"] == 3 and data[0]["first_seen"].startswith("2025-02-04T14:02:00")
    assert data[0]["evidence"]["scan_accounts"] == 3 and data[0]["evidence"]["scan_span_s"] == 60
    assert data[-1]["count"] == 12


def test_replay_on_a_fresh_worker_gives_the_same_alerts(
    first_run: list[Any], broker: EmbeddedBroker, tmp_path: Path
) -> None:
    again = run_burst(broker.url, broker.bootstrap, tmp_path, inputs(),
                      resolved("new_account_swarm", "b-swarm"))
    same_alerts(first_run, again)

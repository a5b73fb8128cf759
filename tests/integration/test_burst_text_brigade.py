"""`text_brigade` through the broker: near-identical text from six accounts fires once; the
same text from three accounts, one account repeating itself, short replies and ordinary
posts do not."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from tests.integration.helpers import (
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
CAMPAIGN = "everyone go to the other forum tonight and tell them what you think of their mods"
SPAM = "cheap watches at the shop around the corner with free shipping to every country"
UPVOTE = "please upvote my thread about the new release so it reaches the front page today"


def inputs() -> list[Any]:
    rng = random.Random(8)
    posts: list[tuple[float, str, str]] = []
    # Normal: thirty ordinary posts; one member posting the same text five times; three
    # members posting the same text (under the staffed threshold of four); short replies.
    posts += [(i * 20, f"old-n{i}", " ".join(rng.choices(WORDS, k=14))) for i in range(30)]
    posts += [(10 + i * 60, "old-repeater", SPAM) for i in range(5)]
    posts += [(15 + i * 90, f"old-trio{i}", UPVOTE) for i in range(3)]
    posts += [(25 + i * 15, f"old-short{i}", "same here lol") for i in range(8)]
    # The brigade: six members, the campaign text with a word of their own at the end.
    posts += [(100 + i * 90, f"old-b{i}", f"{CAMPAIGN} {rng.choice(['now', 'pls', '!!'])}")
              for i in range(6)]
    posts.sort(key=lambda p: p[0])
    events = [forum_post(f"p{n}", f"t{n}", "b1", member(author), body, at(when))
              for n, (when, author, body) in enumerate(posts)]
    return events + [forum_post("p-marker", "t-marker", "b1", member("old-m"), "a quiet "
                                "evening on the forum with nothing much going on here", at(7200))]


def brigade_resolved(events: list[dict[str, Any]]) -> bool:
    return resolved("text_brigade", "b1")(events)


@pytest.fixture(scope="module")
def first_run(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory
              ) -> list[dict[str, Any]]:
    return run_burst(broker.url, broker.bootstrap, tmp_path_factory.mktemp("brigade"),
                     inputs(), brigade_resolved)


def test_a_brigade_fires_once_and_ordinary_or_repeated_text_does_not(
    first_run: list[Any]
) -> None:
    data = assert_one_incident(first_run, "text_brigade")
    assert data[0]["count"] == 4 and data[0]["first_seen"].startswith("2025-02-04T14:01:40")
    assert data[0]["evidence"]["excerpt"].startswith("everyone go to the other forum")
    assert data[-1]["count"] == 6


def test_replay_on_a_fresh_worker_gives_the_same_alerts(
    first_run: list[Any], broker: EmbeddedBroker, tmp_path: Path
) -> None:
    again = run_burst(broker.url, broker.bootstrap, tmp_path, inputs(), brigade_resolved)
    same_alerts(first_run, again)

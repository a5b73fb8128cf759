"""`image_spray` through the broker: one image (PDQ within a few bits) from five accounts fires
once; unrelated images, one account re-posting its image, and three accounts sharing one do
not."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from tests.integration.helpers import (
    assert_one_incident,
    at,
    pdq_signal,
    run_burst,
    same_alerts,
)
from vigil.broker import EmbeddedBroker

pytestmark = pytest.mark.integration


def inputs() -> list[Any]:
    rng = random.Random(9)
    meme, shared, sprayed = rng.getrandbits(256), rng.getrandbits(256), rng.getrandbits(256)

    def near(value: int) -> int:  # re-encoding flips a few bits of a PDQ hash
        for _ in range(rng.randint(0, 8)):
            value ^= 1 << rng.randrange(256)
        return value

    signals: list[tuple[float, str, int]] = []
    # Normal: twenty unrelated images; one member posting its meme five times; three members
    # sharing one image (under the staffed threshold of four).
    signals += [(i * 30, f"u-n{i}", rng.getrandbits(256)) for i in range(20)]
    signals += [(10 + i * 60, "u-memer", near(meme)) for i in range(5)]
    signals += [(15 + i * 90, f"u-share{i}", near(shared)) for i in range(3)]
    # The spray: five accounts, the same picture, two minutes apart.
    signals += [(100 + i * 120, f"u-spray{i}", near(sprayed)) for i in range(5)]
    signals.sort(key=lambda s: s[0])
    events = [pdq_signal(f"img-{author}-{n}", author, value, at(when))
              for n, (when, author, value) in enumerate(signals)]
    return events + [pdq_signal("img-marker", "u-m", rng.getrandbits(256), at(7200))]


def spray_resolved(events: list[dict[str, Any]]) -> bool:
    return any(e["data"]["kind"] == "image_spray" and e["data"]["evidence"].get("resolved")
               and e["data"]["target"]["id"].startswith("img-u-spray0-") for e in events)


@pytest.fixture(scope="module")
def first_run(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory
              ) -> list[dict[str, Any]]:
    return run_burst(broker.url, broker.bootstrap, tmp_path_factory.mktemp("spray"), inputs(),
                     spray_resolved)


def test_a_spray_fires_once_and_unrelated_or_few_shared_images_do_not(
    first_run: list[Any]
) -> None:
    data = assert_one_incident(first_run, "image_spray")
    assert data[0]["target"]["id"].startswith("img-u-spray0-")  # keyed by its first image
    assert data[0]["count"] == 4 and data[0]["first_seen"].startswith("2025-02-04T14:01:40")
    assert data[-1]["count"] == 5
    assert all(i.startswith("img-u-spray") for i in data[-1]["evidence"]["sample_image_ids"])


def test_replay_on_a_fresh_worker_gives_the_same_alerts(
    first_run: list[Any], broker: EmbeddedBroker, tmp_path: Path
) -> None:
    again = run_burst(broker.url, broker.bootstrap, tmp_path, inputs(), spray_resolved)
    same_alerts(first_run, again)

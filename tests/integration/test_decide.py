"""Decide through the real broker: dedup of resent content, a classifier hit at night, reviews.

The worker runs with a policy file that also requires `nsfw_image` for images — the recipe
docs/policy.md gives operators who run the classify role. The test plays the classifier by
producing its signal directly, so it does not depend on model files.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka.partitioner import murmur2
from PIL import Image, ImageDraw

from agents.policy import parse_policy
from streams.codec import encode
from streams.events import SignalData
from streams.signing import verify
from streams.topics import IMAGES, REVIEWS, SIGNALS, TAKEDOWNS, VERDICTS
from tests.integration.helpers import (
    SIGNING_KEY,
    SIGNING_KEY_ID,
    Worker,
    cloud_event,
    collect,
    image_event,
    policy_text,
    produce,
    running,
    topic,
    unique_prefix,
    vigil_env,
    write_bank,
)
from vigil.broker import EmbeddedBroker

pytestmark = pytest.mark.integration
KEYS = {SIGNING_KEY_ID: SIGNING_KEY}
PARTITIONS = 2
POLICY_TEXT = policy_text(image=["nsfw_image", "sha256", "md5", "pdq"], post=[])


def drawn_png(seed: int) -> bytes:
    img = Image.new("RGB", (64, 48), (seed % 255, 40, 120))
    ImageDraw.Draw(img).rectangle([seed % 20, 4, 50, 30], fill=(200, 200, 30))
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


BANNED = drawn_png(7)


@pytest.fixture(scope="module")
def worker(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    data_dir: Path = tmp_path_factory.mktemp("vigil-decide")
    write_bank(data_dir, "b", f"sha256,{hashlib.sha256(BANNED).hexdigest()},test-bank,csam,critical")
    policy = data_dir / "policy.toml"
    policy.write_text(POLICY_TEXT)
    assert "nsfw_image" in parse_policy(POLICY_TEXT).required["image"]
    env = vigil_env(broker.url, unique_prefix(), data_dir, VIGIL_POLICY=str(policy),
                    VIGIL_TOPIC_PARTITIONS=str(PARTITIONS))
    with running(["worker", "--agents", "intake,hashing,decide"], env, data_dir) as worker:
        yield worker


def about(content_id: str, key: str = "content_id") -> Any:
    def match(event: dict[str, Any]) -> bool:
        data = event["data"]
        return (data["target"]["id"] if key == "target" else data.get(key)) == content_id
    return match


def nsfw_signal(image_id: str, score: float) -> tuple[bytes | None, bytes]:
    return encode(SIGNALS, SignalData(
        detector="nsfw_image", detector_version="test-1", content_type="image",
        content_id=image_id, status="clear", score=score, threshold=0.85,
        model="open_nsfw@test"), source="test/classify", event_id=f"sig-nsfw-{image_id}")


def same_partition(content_id: str, prefix: str) -> str:
    """A content id that lands on the same signals partition as `content_id`."""
    want = (murmur2(content_id.encode()) & 0x7FFFFFFF) % PARTITIONS
    for i in range(1000):
        candidate = f"{prefix}-{i}"
        if (murmur2(candidate.encode()) & 0x7FFFFFFF) % PARTITIONS == want:
            return candidate
    raise AssertionError("no candidate")


async def test_same_content_sent_twice_gets_one_decision(worker: Worker,
                                                         broker: EmbeddedBroker) -> None:
    images = topic(worker, IMAGES)
    first = image_event("img-twice", BANNED, post_id="p-twice")
    await produce(broker.bootstrap, images, [json.dumps(first).encode()], key=b"p-twice")
    await collect(broker.bootstrap, topic(worker, VERDICTS), lambda es: any(
        about("img-twice")(e) for e in es))
    # The forum resends it (new event id). Then a marker on the same input partition and the
    # same signals partition: decide handles the resend's signals before the marker's, so
    # once the marker's verdict is out, a second decision for img-twice would be too.
    again = image_event("img-twice", BANNED, post_id="p-twice")
    marker_id = same_partition("img-twice", "img-marker")
    marker = image_event(marker_id, BANNED, post_id="p-twice")
    await produce(broker.bootstrap, images,
                  [json.dumps(again).encode(), json.dumps(marker).encode()], key=b"p-twice")
    verdicts = await collect(broker.bootstrap, topic(worker, VERDICTS),
                             lambda es: any(about(marker_id)(e) for e in es))
    mine = [e for e in verdicts if about("img-twice")(e)]
    assert len(mine) == 1, mine
    takedowns = await collect(broker.bootstrap, topic(worker, TAKEDOWNS),
                              lambda es: any(about(marker_id, "target")(e) for e in es))
    assert [e["data"]["decision_id"] for e in takedowns if about("img-twice", "target")(e)] == [
        mine[0]["data"]["decision_id"]]


async def test_classifier_hit_at_night_is_held_for_review(worker: Worker,
                                                          broker: EmbeddedBroker) -> None:
    event = image_event("img-night", drawn_png(11), post_id="p-night")
    assert event["time"] == "2025-02-04T02:13:05Z"  # 02:13 UTC: outside staffed hours
    day = image_event("img-day", drawn_png(12), post_id="p-day")
    day["time"] = "2025-02-04T12:13:05Z"
    await produce(broker.bootstrap, topic(worker, IMAGES),
                  [json.dumps(event).encode(), json.dumps(day).encode()])
    for image_id in ("img-night", "img-day"):
        key, value = nsfw_signal(image_id, 0.75)  # below the day threshold, above the night one
        await produce(broker.bootstrap, topic(worker, SIGNALS), [value], key=key)

    verdicts = await collect(broker.bootstrap, topic(worker, VERDICTS), lambda es: any(
        about("img-night")(e) for e in es) and any(about("img-day")(e) for e in es))
    night = next(e for e in verdicts if about("img-night")(e))
    assert night["data"]["verdict"] == "hold" and verify(night, KEYS)
    assert night["data"]["policy_version"] == parse_policy(POLICY_TEXT).version
    assert next(e for e in verdicts if about("img-day")(e))["data"]["verdict"] == "allow"
    takedowns = await collect(broker.bootstrap, topic(worker, TAKEDOWNS),
                              lambda es: any(about("img-night", "target")(e) for e in es))
    takedown = next(e for e in takedowns if about("img-night", "target")(e))
    assert takedown["data"]["action"] == "hold_for_review"
    assert takedown["data"]["reasons"][0]["detector"] == "nsfw_image"


async def test_restore_review_emits_a_restore_takedown(worker: Worker,
                                                       broker: EmbeddedBroker) -> None:
    await produce(broker.bootstrap, topic(worker, IMAGES),
                  [json.dumps(image_event("img-restore", BANNED, post_id="p-r")).encode()])
    takedowns = await collect(broker.bootstrap, topic(worker, TAKEDOWNS),
                              lambda es: any(about("img-restore", "target")(e) for e in es))
    block = next(e for e in takedowns if about("img-restore", "target")(e))
    assert block["data"]["action"] == "block"
    review = cloud_event("safety.review", {
        "decision_id": block["data"]["decision_id"], "outcome": "restore",
        "reviewer": "mod-1", "content_id": "img-restore", "note": "false positive"})
    await produce(broker.bootstrap, topic(worker, REVIEWS), [json.dumps(review).encode()] * 2,
                  key=b"img-restore")  # delivered twice: still one restore

    takedowns = await collect(broker.bootstrap, topic(worker, TAKEDOWNS), lambda es: any(
        about("img-restore", "target")(e) and e["data"]["action"] == "restore" for e in es))
    restore = next(e for e in takedowns
                   if about("img-restore", "target")(e) and e["data"]["action"] == "restore")
    assert verify(restore, KEYS)
    assert restore["data"]["decision_id"] != block["data"]["decision_id"]
    assert restore["data"]["target"]["post_id"] == "p-r"
    verdicts = await collect(broker.bootstrap, topic(worker, VERDICTS), lambda es: any(
        about("img-restore")(e) and e["data"]["verdict"] == "allow" for e in es))
    allow = next(e for e in verdicts
                 if about("img-restore")(e) and e["data"]["verdict"] == "allow")
    assert allow["data"]["decision_id"] == restore["data"]["decision_id"]

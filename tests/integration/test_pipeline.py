"""End to end through the real embedded broker: a `vigil worker` subprocess with every agent."""

from __future__ import annotations

import base64
import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from streams.signing import verify
from streams.topics import ALERTS, DEADLETTER, IMAGES, POSTS, TAKEDOWNS, VERDICTS
from tests.integration.helpers import (
    SIGNING_KEY,
    SIGNING_KEY_ID,
    Worker,
    collect,
    http,
    image_event,
    post_event,
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


def drawn_png(seed: int) -> bytes:
    img = Image.new("RGB", (64, 48), (seed % 255, 90, 200))
    ImageDraw.Draw(img).ellipse([seed % 30, 5, 40, 40], fill=(10, 200, 30))
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


BANNED = drawn_png(1)
BENIGN = drawn_png(2)


@pytest.fixture(scope="module")
def worker(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    data_dir: Path = tmp_path_factory.mktemp("vigil")
    write_bank(data_dir, "test-bank",
               f"sha256,{hashlib.sha256(BANNED).hexdigest()},test-bank,csam,critical")
    env = vigil_env(broker.url, unique_prefix(), data_dir)
    with running(["worker", "--agents", "intake,hashing,decide"], env, data_dir) as worker:
        yield worker


def by_content(content_id: str):
    return lambda events: any(e["data"].get("content_id") == content_id for e in events)


async def test_banned_image_is_blocked_with_signed_takedown_and_alert(
    worker: Worker, broker: EmbeddedBroker
) -> None:
    await produce(broker.bootstrap, topic(worker, IMAGES),
                  [json.dumps(image_event("img-banned", BANNED)).encode()])

    verdicts = await collect(broker.bootstrap, topic(worker, VERDICTS), by_content("img-banned"))
    verdict = next(e for e in verdicts if e["data"]["content_id"] == "img-banned")
    assert verdict["data"]["verdict"] == "block"
    assert verify(verdict, KEYS)
    assert verdict["data"]["reasons"][0]["bank"] == "test-bank"

    takedowns = await collect(
        broker.bootstrap, topic(worker, TAKEDOWNS),
        lambda es: any(e["data"]["target"]["id"] == "img-banned" for e in es))
    takedown = next(e for e in takedowns if e["data"]["target"]["id"] == "img-banned")
    assert takedown["data"]["action"] == "block"
    assert takedown["data"]["severity"] == "critical"
    assert takedown["data"]["decision_id"] == verdict["data"]["decision_id"]
    assert takedown["sigkeyid"] == SIGNING_KEY_ID
    assert verify(takedown, KEYS)
    tampered = json.loads(json.dumps(takedown))
    tampered["data"]["action"] = "restore"
    assert not verify(tampered, KEYS)

    alerts = await collect(broker.bootstrap, topic(worker, ALERTS),
                           lambda es: any(e["data"]["kind"] == "hash_match" for e in es))
    alert = next(e for e in alerts if e["data"]["target"]["id"] == "img-banned")
    assert alert["data"]["severity"] == "critical"
    assert hashlib.sha256(BANNED).hexdigest() not in json.dumps(alert)  # bank content never leaks


async def test_benign_image_and_post_are_allowed(worker: Worker, broker: EmbeddedBroker) -> None:
    await produce(broker.bootstrap, topic(worker, IMAGES),
                  [json.dumps(image_event("img-benign", BENIGN)).encode()])
    await produce(broker.bootstrap, topic(worker, POSTS),
                  [json.dumps(post_event("post-benign")).encode()])
    verdicts = await collect(
        broker.bootstrap, topic(worker, VERDICTS),
        lambda es: by_content("img-benign")(es) and by_content("post-benign")(es))
    mine = {e["data"]["content_id"]: e for e in verdicts
            if e["data"]["content_id"] in ("img-benign", "post-benign")}
    assert mine["img-benign"]["data"]["verdict"] == "allow"
    assert mine["post-benign"]["data"]["verdict"] == "allow"
    assert all(verify(e, KEYS) for e in mine.values())
    # A later banned image marks a point after which a takedown for the benign one would show.
    await produce(broker.bootstrap, topic(worker, IMAGES),
                  [json.dumps(image_event("img-marker", BANNED)).encode()])
    takedowns = await collect(broker.bootstrap, topic(worker, TAKEDOWNS),
                              lambda es: any(e["data"]["target"]["id"] == "img-marker" for e in es))
    assert not any(e["data"]["target"]["id"] in ("img-benign", "post-benign") for e in takedowns)


async def test_malformed_inputs_are_dead_lettered_and_worker_keeps_going(
    worker: Worker, broker: EmbeddedBroker
) -> None:
    not_json = b'{"specversion": "1.0", "id": "broken'
    not_cloudevent = json.dumps({"hello": "world"}).encode()
    missing_field = json.dumps(post_event("p-missing")).replace('"post_id"', '"postid"').encode()
    await produce(broker.bootstrap, topic(worker, POSTS),
                  [not_json, not_cloudevent, missing_field,
                   json.dumps(post_event("post-after-bad")).encode()], key=b"t-bad")

    dead = await collect(broker.bootstrap, topic(worker, DEADLETTER),
                         lambda es: sum(e["data"]["topic"] == POSTS.name for e in es) >= 3)
    by_original = {base64.b64decode(e["data"]["original"]): e["data"] for e in dead}
    assert "not valid JSON" in by_original[not_json]["reason"]
    assert "specversion" in by_original[not_cloudevent]["reason"]
    assert "post_id" in by_original[missing_field]["reason"]
    for data in (by_original[not_json], by_original[missing_field]):
        assert data["topic"] == POSTS.name and data["offset"] >= 0

    verdicts = await collect(broker.bootstrap, topic(worker, VERDICTS),
                             by_content("post-after-bad"))
    assert any(e["data"]["content_id"] == "post-after-bad" and e["data"]["verdict"] == "allow"
               for e in verdicts)


async def test_unreadable_image_is_held_not_allowed(worker: Worker, broker: EmbeddedBroker) -> None:
    event = image_event("img-by-url", b"")
    del event["data"]["data_b64"]
    event["data"]["url"] = "https://images.example/x.png"
    await produce(broker.bootstrap, topic(worker, IMAGES), [json.dumps(event).encode()])
    verdicts = await collect(broker.bootstrap, topic(worker, VERDICTS), by_content("img-by-url"))
    verdict = next(e for e in verdicts if e["data"]["content_id"] == "img-by-url")
    assert verdict["data"]["verdict"] == "hold"


def test_http_ingest_accepts_valid_and_rejects_invalid(worker: Worker) -> None:
    status, body = http("POST", worker.url("/v1/events"),
                        json.dumps(post_event("post-http")).encode(),
                        {"Content-Type": "application/cloudevents+json"})
    assert status == 202, body
    assert json.loads(body)["accepted"] == 1

    batch = [post_event("post-http-2"), image_event("img-http", BENIGN)]
    status, body = http("POST", worker.url("/v1/events"), json.dumps(batch).encode())
    assert status == 202, body
    assert json.loads(body)["ids"] == [e["id"] for e in batch]

    bad = [post_event("ok"), {**post_event("x"), "data": {"thread_id": "t", "body": "b"}}]
    status, body = http("POST", worker.url("/v1/events"), json.dumps(bad).encode())
    assert status == 400
    errors = json.loads(body)["errors"]
    assert errors[0]["index"] == 1 and "post_id" in errors[0]["error"]

    status, _ = http("POST", worker.url("/v1/events"), b"x" * (2 * 1024 * 1024))
    assert status == 413


async def test_http_ingest_reaches_a_verdict(worker: Worker, broker: EmbeddedBroker) -> None:
    status, _ = http("POST", worker.url("/v1/events"),
                     json.dumps(image_event("img-http-banned", BANNED)).encode())
    assert status == 202
    verdicts = await collect(broker.bootstrap, topic(worker, VERDICTS),
                             by_content("img-http-banned"))
    assert next(e for e in verdicts if e["data"]["content_id"] == "img-http-banned")[
        "data"]["verdict"] == "block"


def test_health_and_metrics(worker: Worker) -> None:
    assert http("GET", worker.url("/healthz"))[0] == 200
    status, body = http("GET", worker.url("/readyz"))
    assert status == 200 and json.loads(body)["checks"]["partitions_assigned"] is True
    status, body = http("GET", worker.url("/metrics"))
    assert status == 200
    assert b"vigil_events_in_total" in body and b"vigil_verdicts_total" in body
    # forum event time → verdict is observed for every decided content (events here are old:
    # their time is 2025-02-04, so they land in the top buckets)
    assert b'vigil_event_to_verdict_seconds_count{content_type="post"}' in body


async def test_hostile_inputs_are_dead_lettered_and_the_worker_survives(
    worker: Worker, broker: EmbeddedBroker
) -> None:
    valid = json.dumps(post_event("p-hostile")).encode()
    hostile = {
        "invalid utf-8": valid.replace(b'"p-hostile"', b'"p-\xff\xfe"'),
        "deep nesting": valid[:-2] + b', "x": ' + b"[" * 200_000 + b"]" * 200_000 + b"}}",
        "nul byte": valid.replace(b'"hello forum"', b'"hello\x00forum"'),
        "zero bytes": b"",
    }
    await produce(broker.bootstrap, topic(worker, POSTS), list(hostile.values()), key=b"t-h")
    await produce(broker.bootstrap, topic(worker, POSTS),
                  [json.dumps(post_event("post-after-hostile")).encode()], key=b"t-h")
    dead = await collect(broker.bootstrap, topic(worker, DEADLETTER), lambda es: all(
        any(base64.b64decode(e["data"]["original"]) == raw for e in es)
        for raw in hostile.values()))
    reasons = {base64.b64decode(e["data"]["original"]): e["data"]["reason"] for e in dead}
    assert "invalid UTF-8" in reasons[hostile["invalid utf-8"]]
    assert "nested too deeply" in reasons[hostile["deep nesting"]]
    assert reasons[hostile["zero bytes"]] == "empty message value"
    verdicts = await collect(broker.bootstrap, topic(worker, VERDICTS),
                             by_content("post-after-hostile"))
    assert any(e["data"]["content_id"] == "post-after-hostile" for e in verdicts)
    assert worker.proc.poll() is None
    status, _ = http("POST", worker.url("/v1/events"), b"[" + b" " * (10 * 1024 * 1024) + b"]")
    assert status == 413  # a 10 MB body never reaches the broker


def test_a_worker_running_only_consume_loops_becomes_ready(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """An intake-only worker runs no faust agent (intake is a plain consume loop): /readyz
    must still turn 200 once the loop joined its group, or a k8s intake Deployment never
    receives traffic."""
    env = vigil_env(broker.url, unique_prefix(), tmp_path)
    with running(["worker", "--agents", "intake"], env, tmp_path / "intake") as worker:
        status, body = http("GET", worker.url("/readyz"))
        assert status == 200 and json.loads(body)["checks"]["partitions_assigned"] is True

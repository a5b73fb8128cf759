"""The console end to end through the real broker: a held image appears in the queue, a restore
through the console's POST becomes a review and decide's `restore` takedown."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from aiokafka import AIOKafkaConsumer

from streams.codec import encode
from streams.events import AlertData
from streams.topics import ALERTS, IMAGES, POSTS, REPORTS, REVIEWS, TAKEDOWNS, VERDICTS
from tests.integration.console_env import (
    CSAM_IMAGE,
    PASSWORD,
    csam_image_event,
    held_image_event,
    report_event,
    start_console_worker,
)
from tests.integration.helpers import Worker, collect, post_event, produce, topic
from vigil.broker import EmbeddedBroker

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def worker(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    running = start_console_worker(broker.url, tmp_path_factory.mktemp("console"))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
async def client(worker: Worker) -> AsyncIterator[aiohttp.ClientSession]:
    # unsafe=True: keep cookies for an IP-address host (127.0.0.1)
    async with aiohttp.ClientSession(worker.url(""), cookie_jar=aiohttp.CookieJar(unsafe=True)
                                     ) as session:
        yield session


async def login(client: aiohttp.ClientSession, user: str) -> str:
    async with client.post("/console/login", data={"username": user, "password": PASSWORD}) as r:
        page = await r.text()
        assert r.status == 200, page
    token = re.search(r'name="csrf" value="([^"]+)"', page)
    assert token, page
    return token.group(1)


async def wait_in_queue(client: aiohttp.ClientSession, content_id: str, action: str,
                        timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        async with client.get("/console/api/queue") as r:
            assert r.status == 200
            for item in (await r.json())["items"]:
                if item["content_id"] == content_id and item["action"] == action:
                    return item
        await asyncio.sleep(0.2)
    raise AssertionError(f"{content_id} ({action}) never reached the console queue")


async def test_held_image_restored_through_console(
        worker: Worker, broker: EmbeddedBroker, client: aiohttp.ClientSession) -> None:
    await produce(broker.bootstrap, topic(worker, IMAGES), [held_image_event("img-held")])
    await produce(broker.bootstrap, topic(worker, REPORTS), [report_event("img-held")])
    csrf = await login(client, "vera")
    item = await wait_in_queue(client, "img-held", "hold_for_review")
    assert item["csam"] is False and item["reports"] == 1
    async with client.get(item["thumbnail"]) as r:
        assert r.status == 200 and r.content_type == "image/jpeg"

    async with client.post("/console/items/image/img-held/review",
                           data={"outcome": "restore", "csrf": csrf}) as r:
        assert r.status == 200  # redirected back to the queue
    reviews = await collect(broker.bootstrap, topic(worker, REVIEWS),
                            lambda es: any(e["data"].get("content_id") == "img-held" for e in es))
    review = next(e for e in reviews if e["data"]["content_id"] == "img-held")["data"]
    assert review["outcome"] == "restore" and review["reviewer"] == "vera"
    assert review["decision_id"] == item["decision_id"]
    takedowns = await collect(
        broker.bootstrap, topic(worker, TAKEDOWNS),
        lambda es: any(e["data"]["target"]["id"] == "img-held"
                       and e["data"]["action"] == "restore" for e in es))
    assert any(e["data"]["action"] == "restore" for e in takedowns
               if e["data"]["target"]["id"] == "img-held")


async def test_csam_block_is_metadata_only(
        worker: Worker, broker: EmbeddedBroker, client: aiohttp.ClientSession) -> None:
    await produce(broker.bootstrap, topic(worker, IMAGES), [csam_image_event("img-csam")])
    await login(client, "ada")
    item = await wait_in_queue(client, "img-csam", "block")
    assert item["csam"] is True and item["thumbnail"] is None
    async with client.get("/console/items/image/img-csam/thumb") as r:
        assert r.status == 404
    async with client.get("/console/items/image/img-csam") as r:
        page = await r.text()
    assert "img-csam/thumb" not in page and "Image withheld" in page
    async with client.get("/console/items/image/img-csam/evidence.json") as r:
        evidence = await r.json()
    assert evidence["image_included"] is False and evidence["matches"][0]["label"] == "csam"


async def test_unauthenticated_and_status(worker: Worker, client: aiohttp.ClientSession) -> None:
    async with client.get("/console/api/queue") as r:
        assert r.status == 401
    async with client.get("/console/", allow_redirects=False) as r:
        assert r.status == 302
    async with client.get("/status.json") as r:
        status = await r.json()
    assert status["automated"] is True and status["watched"] is True
    assert status["support_links"][0]["label"] == "Support for moderators"


def _alert_event(kind: str, dedup: str, target: dict, evidence: dict,
                 first_seen: datetime) -> tuple[bytes | None, bytes]:
    data = msgspec.convert({
        "alert_id": f"a-{uuid.uuid4().hex[:8]}", "kind": kind, "severity": "high",
        "summary": f"{kind} on {target['id']}", "target": target, "evidence": evidence,
        "first_seen": first_seen, "last_seen": datetime.now(timezone.utc),
        "dedup_key": dedup}, AlertData)
    return encode(ALERTS, data, source="vigil/test")


async def _incidents(client: aiohttp.ClientSession, until: Any, what: str,
                     timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        async with client.get("/console/api/alerts") as r:
            assert r.status == 200
            body = await r.json()
        if until(body):
            return body
        await asyncio.sleep(0.2)
    raise AssertionError(f"never saw {what} in /console/api/alerts: {body}")


async def test_bulk_hide_of_a_raid_confirms_each_post_and_decide_hides_them(
        worker: Worker, broker: EmbeddedBroker, client: aiohttp.ClientSession) -> None:
    thread = f"t-raid-{uuid.uuid4().hex[:6]}"
    start = datetime.now(timezone.utc) - timedelta(seconds=30)
    posts = [f"{thread}-p{i}" for i in range(3)]
    events = []
    for i, pid in enumerate(posts):  # ordinary-looking posts: decide allows them
        event = post_event(pid, body=f"join the party {i}")
        event["data"].update(thread_id=thread, author={"id": f"raider-{i}"})
        event["time"] = datetime.now(timezone.utc).isoformat()
        events.append(json.dumps(event).encode())
    await produce(broker.bootstrap, topic(worker, POSTS), events)
    verdicts = await collect(broker.bootstrap, topic(worker, VERDICTS),
                             lambda es: {e["data"]["content_id"] for e in es} >= set(posts))
    decisions = {e["data"]["content_id"]: e["data"]["decision_id"] for e in verdicts
                 if e["data"]["content_id"] in posts}
    dedup = f"thread_raid:{thread}"
    key, value = _alert_event("thread_raid", dedup, {"type": "thread", "id": thread},
                              {"sample_post_ids": posts[:1]}, start)
    await produce(broker.bootstrap, topic(worker, ALERTS), [value], key=key)

    csrf = await login(client, "mo")
    await _incidents(client, lambda b: any(i["dedup_key"] == dedup and i["hideable"] == 3
                                           for i in b["incidents"]), "3 hideable posts")
    async with client.post("/console/alerts/hide", data={"dedup_key": dedup, "csrf": csrf}) as r:
        assert r.status == 200
    reviews = await collect(
        broker.bootstrap, topic(worker, REVIEWS),
        lambda es: {e["data"].get("content_id") for e in es} >= set(posts))
    mine = [e["data"] for e in reviews if e["data"].get("content_id") in posts]
    assert len(mine) == 3
    assert all(r["outcome"] == "confirm" and r["reviewer"] == "mo" for r in mine)
    assert {r["content_id"]: r["decision_id"] for r in mine} == decisions
    # decide (same worker) answers each confirm of allowed content with a signed `hide`
    takedowns = await collect(
        broker.bootstrap, topic(worker, TAKEDOWNS),
        lambda es: {e["data"]["target"]["id"] for e in es
                    if e["data"]["action"] == "hide"} >= set(posts))
    hides = [e for e in takedowns
             if e["data"]["target"]["id"] in posts and e["data"]["action"] == "hide"]
    assert len(hides) == 3 and all(e.get("signature") and e.get("sigkeyid") for e in hides)
    # the console read its own reviews back: nothing of the raid is left to hide
    await _incidents(client, lambda b: any(i["dedup_key"] == dedup and i["hideable"] == 0
                                           for i in b["incidents"]), "no hideable posts")


async def test_lift_a_mitigation_from_the_console(
        worker: Worker, broker: EmbeddedBroker, client: aiohttp.ClientSession) -> None:
    thread = f"t-mit-{uuid.uuid4().hex[:6]}"
    dedup = f"mitigation:{thread}"
    expires = datetime.now(timezone.utc) + timedelta(minutes=30)
    key, value = _alert_event("mitigation", dedup, {"type": "thread", "id": thread}, {
        "mitigation": "young_accounts_read_only", "decision_id": f"dec-{thread}",
        "scope": "thread", "expires_at": expires.isoformat(), "trigger": "thread_raid",
        "resolved": False}, datetime.now(timezone.utc))
    await produce(broker.bootstrap, topic(worker, ALERTS), [value], key=key)
    csrf = await login(client, "mo")
    body = await _incidents(client, lambda b: any(m["dedup_key"] == dedup
                                                  for m in b["mitigations"]), "the mitigation")
    shown = next(m for m in body["mitigations"] if m["dedup_key"] == dedup)
    assert shown["scope"] == {"type": "thread", "id": thread}
    assert 0 < shown["expires_in_s"] <= 30 * 60
    assert not any(i["dedup_key"] == dedup for i in body["incidents"])
    async with client.get("/console/") as r:
        assert "young_accounts_read_only" in await r.text()

    async with client.post("/console/mitigations/lift",
                           data={"dedup_key": dedup, "csrf": csrf}) as r:
        assert r.status == 200
    reviews = await _raw(broker.bootstrap, topic(worker, REVIEWS), thread.encode())
    assert len(reviews) == 1
    review = json.loads(reviews[0])["data"]
    assert (review["decision_id"], review["outcome"], review["content_id"]) == (
        f"dec-{thread}", "restore", thread)
    # decide's lift announcement (same dedup key, resolved) removes it
    key, value = _alert_event("mitigation", dedup, {"type": "thread", "id": thread}, {
        "mitigation": "young_accounts_read_only", "decision_id": f"dec-{thread}",
        "resolved": True}, datetime.now(timezone.utc))
    await produce(broker.bootstrap, topic(worker, ALERTS), [value], key=key)
    await _incidents(client, lambda b: not any(m["dedup_key"] == dedup
                                               for m in b["mitigations"]), "the lift")


async def _raw(bootstrap: str, name: str, key: bytes, timeout: float = 60) -> list[bytes]:
    """Values of the messages with `key` on `name` (the review is keyed by the scope id)."""
    consumer = AIOKafkaConsumer(name, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    found: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while not found:
            assert time.monotonic() < deadline, f"no message keyed {key!r} on {name}"
            batch = await consumer.getmany(timeout_ms=200)
            found += [m.value for ms in batch.values() for m in ms if m.key == key]
    finally:
        await consumer.stop()
    return found


async def test_evidence_retention_keeps_the_matched_image_encrypted(
        broker: EmbeddedBroker, tmp_path: Path) -> None:
    key = base64.b64encode(os.urandom(32)).decode()
    retaining = start_console_worker(broker.url, tmp_path / "retain",
                                     VIGIL_CONSOLE_EVIDENCE_RETENTION="hash_match",
                                     VIGIL_CONSOLE_EVIDENCE_KEY=key)
    try:
        await produce(broker.bootstrap, topic(retaining, IMAGES), [csam_image_event("img-ev")])
        async with aiohttp.ClientSession(retaining.url(""),
                                         cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:
            await login(client, "mo")
            await wait_in_queue(client, "img-ev", "block")
            async with client.get("/console/items/image/img-ev/evidence.json") as r:
                package = await r.json()
    finally:
        retaining.stop()
    assert package["image_included"] is True
    assert base64.b64decode(package["image"]["data_b64"]) == CSAM_IMAGE
    blobs = list((tmp_path / "retain" / "evidence").glob("*.evd"))
    assert len(blobs) == 1
    raw = blobs[0].read_bytes()
    assert CSAM_IMAGE[:64] not in raw and base64.b64encode(CSAM_IMAGE)[:64] not in raw
    assert key.encode() not in raw
    log = retaining.log_path.read_bytes()
    assert base64.b64encode(CSAM_IMAGE)[:64] not in log

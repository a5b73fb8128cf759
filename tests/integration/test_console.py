"""The console end to end through the real broker: a held image appears in the queue, a restore
through the console's POST becomes a review and decide's `restore` takedown."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from streams.topics import IMAGES, REPORTS, REVIEWS, TAKEDOWNS
from tests.integration.console_env import (
    PASSWORD,
    csam_image_event,
    held_image_event,
    report_event,
    start_console_worker,
)
from tests.integration.helpers import Worker, collect, produce, topic
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

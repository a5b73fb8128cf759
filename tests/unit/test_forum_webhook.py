"""Forum webhook delivery: signed, retried, ordered per content, nothing lost on outages."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from agents.forum_webhook import ForumDelivery, Record, _event_id
from agents.metrics import Metrics
from streams.forum_client import verify_webhook

SECRET = b"forum-secret"


class Receiver:
    """A local forum endpoint that fails the first `failures` requests with `status`."""

    def __init__(self, failures: int = 0, status: int = 503) -> None:
        self.failures = failures
        self.status = status
        self.received: list[tuple[bytes, dict[str, str]]] = []
        self.attempts = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.attempts += 1
        body = await request.read()
        if self.failures > 0:
            self.failures -= 1
            return web.Response(status=self.status, text="down")
        self.received.append((body, dict(request.headers)))
        return web.Response(status=204)


async def serve(receiver: Receiver) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # noqa: SLF001
    return runner, f"http://127.0.0.1:{port}/hook"


def record(key: str, n: int) -> Record:
    body = json.dumps({"id": f"vrd-{key}-{n}", "data": {"content_id": key, "n": n}}).encode()
    return Record(key.encode(), _event_id(body), body)


async def no_sleep(_: float) -> None:
    await asyncio.sleep(0)


async def deliver(receiver: Receiver, records: list[Record], **kwargs: Any) -> Metrics:
    runner, url = await serve(receiver)
    metrics = Metrics()
    try:
        async with aiohttp.ClientSession() as session:
            await ForumDelivery(url, SECRET, metrics, sleep=no_sleep, **kwargs).deliver_batch(
                session, records)
    finally:
        await runner.cleanup()
    return metrics


async def test_every_record_arrives_signed_and_untouched() -> None:
    receiver = Receiver()
    records = [record("img-1", 1), record("post-2", 1)]
    await deliver(receiver, records)
    assert sorted(body for body, _ in receiver.received) == sorted(r.body for r in records)
    for body, headers in receiver.received:
        assert verify_webhook(SECRET, body, headers)
        assert not verify_webhook(b"other", body, headers)
        assert headers["X-Vigil-Event-Id"] == json.loads(body)["id"]


async def test_outage_delays_but_loses_nothing_and_keeps_order_per_content() -> None:
    receiver = Receiver(failures=4, status=503)
    records = [record("img-1", n) for n in range(3)] + [record("img-2", 0)]
    metrics = await deliver(receiver, records)
    assert len(receiver.received) == 4
    order = [json.loads(b)["data"]["n"] for b, _ in receiver.received
             if json.loads(b)["data"]["content_id"] == "img-1"]
    assert order == [0, 1, 2]
    sample = metrics.registry.get_sample_value
    assert sample("vigil_pager_deliveries_total",
                  {"destination": "forum_webhook", "outcome": "retry"}) == 4


async def test_a_rejected_record_is_given_up_after_the_limit() -> None:
    receiver = Receiver(failures=100, status=400)
    metrics = await deliver(receiver, [record("bad", 0)], max_rejected_attempts=3)
    assert receiver.attempts == 3 and receiver.received == []
    assert metrics.registry.get_sample_value(
        "vigil_pager_deliveries_total",
        {"destination": "forum_webhook", "outcome": "rejected"}) == 1


def test_a_secret_is_required() -> None:
    with pytest.raises(ValueError, match="VIGIL_FORUM_WEBHOOK_SECRET"):
        ForumDelivery("http://127.0.0.1:1/hook", b"", Metrics())

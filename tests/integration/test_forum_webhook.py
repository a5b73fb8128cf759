"""Through the real broker: a forum without Kafka gets signed verdicts and takedowns by webhook."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

import pytest

from streams.forum_client import verify_webhook
from streams.signing import verify
from tests.integration.helpers import (
    SIGNING_KEY,
    SIGNING_KEY_ID,
    http,
    image_event,
    post_event,
    start_vigil,
    unique_prefix,
    vigil_env,
    wait_ready,
)
from tests.unit.test_forum_webhook import Receiver, serve
from vigil.broker import EmbeddedBroker

pytestmark = pytest.mark.integration
BANNED = b"\x89PNG pretend banned bytes for the exact-hash bank"


async def test_forum_receives_verdicts_and_takedowns(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    receiver = Receiver(failures=2, status=503)  # the forum is briefly down
    runner, url = await serve(receiver)
    banks = tmp_path / "banks"
    banks.mkdir(parents=True)
    (banks / "b.csv").write_text("signal_type,signal,bank,label,severity\n"
                                 f"sha256,{hashlib.sha256(BANNED).hexdigest()},b,csam,critical\n")
    env = vigil_env(broker.url, unique_prefix(), tmp_path, VIGIL_FORUM_WEBHOOK_URL=url,
                    VIGIL_FORUM_WEBHOOK_SECRET="hook-secret", VIGIL_NOTIFY_RETRY_INITIAL_SECONDS="0.1")
    running = start_vigil(["worker", "--agents", "intake,hashing,decide,forum_webhook"], env,
                          tmp_path)
    try:
        await asyncio.to_thread(wait_ready, running)
        for event in (post_event("fw-post"), image_event("fw-img", BANNED)):
            status, _ = await asyncio.to_thread(
                http, "POST", running.url("/v1/events"), json.dumps(event).encode())
            assert status == 202

        def got() -> dict[str, set[str]]:
            seen: dict[str, set[str]] = {}
            for body, _ in receiver.received:
                event = json.loads(body)
                content = event["data"].get("content_id") or event["data"]["target"]["id"]
                seen.setdefault(content, set()).add(event["type"])
            return seen

        for _ in range(600):
            seen = got()
            if seen.get("fw-post") and seen.get("fw-img") == {"safety.verdict", "safety.takedown"}:
                break
            await asyncio.sleep(0.1)
        assert seen.get("fw-post") == {"safety.verdict"}
        assert seen.get("fw-img") == {"safety.verdict", "safety.takedown"}
        for body, headers in receiver.received:
            assert verify_webhook("hook-secret", body, headers)
            assert verify(json.loads(body), {SIGNING_KEY_ID: SIGNING_KEY})
    finally:
        running.stop()
        await runner.cleanup()

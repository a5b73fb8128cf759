"""Notifiers and the notify agent's delivery core against a local HTTP receiver (127.0.0.1,
random port): Alertmanager, PagerDuty and webhook formats, signatures, retries, dedup, re-pages."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from agents.metrics import Metrics
from agents.notifiers import build_notifiers
from agents.notify import Delivery
from agents.policy import load_default_policy
from streams.events import AlertData, Target
from streams.forum_client import verify_webhook

NIGHT = datetime(2025, 2, 4, 2, 13, 5, tzinfo=timezone.utc)
DAY = datetime(2025, 2, 4, 12, 0, tzinfo=timezone.utc)
POLICY = load_default_policy()
SECRET = "webhook-secret"


@dataclass
class Receiver:
    """Records every request; answers `fail_with` for the first `failures` requests."""

    url: str = ""
    requests: list[tuple[str, bytes, dict[str, str]]] = field(default_factory=list)
    failures: int = 0
    fail_with: int = 500

    def bodies(self, path: str) -> list[Any]:
        return [json.loads(body) for p, body, _ in self.requests if p == path]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    state = Receiver()

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        if state.failures > 0:
            state.failures -= 1
            return web.Response(status=state.fail_with, text="down")
        state.requests.append((request.path, body, dict(request.headers)))
        return web.Response(status=202 if request.path == "/pd" else 200, text="{}")

    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", handle)
    server = TestServer(app, host="127.0.0.1")  # a free random port
    await server.start_server()
    state.url = str(server.make_url(""))
    try:
        yield state
    finally:
        await server.close()


def alert(**changes: Any) -> AlertData:
    values: dict[str, Any] = dict(
        alert_id="alr-1", kind="hash_match", severity="critical",
        summary="Known image blocked: image i-1 matched bank 'b' (csam)",
        target=Target(type="image", id="i-1", post_id="p-1"), evidence={"banks": ["b"]},
        first_seen=NIGHT, last_seen=NIGHT, dedup_key="hash_match:image:i-1",
        runbook_url="docs/runbook.md#hash_match")
    values.update(changes)
    return AlertData(**values)


def delivery(receiver: Receiver, **kwargs: Any) -> tuple[Delivery, list[float], Metrics]:
    notifiers = build_notifiers(
        alertmanager_url=receiver.url.rstrip("/") + "/am",
        pagerduty_url=receiver.url.rstrip("/") + "/pd", pagerduty_routing_key="rk-123",
        webhook_url=receiver.url.rstrip("/") + "/hook", webhook_secret=SECRET)
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    metrics = Metrics()
    kwargs.setdefault("sleep", sleep)
    return Delivery(notifiers, lambda: POLICY, metrics, **kwargs), sleeps, metrics


def count(metrics: Metrics, destination: str, outcome: str) -> float:
    value = metrics.registry.get_sample_value(
        "vigil_pager_deliveries_total", {"destination": destination, "outcome": outcome})
    return value or 0.0


async def test_alert_reaches_every_destination_in_its_format(receiver: Receiver) -> None:
    d, _, metrics = delivery(receiver)
    async with aiohttp.ClientSession() as session:
        await d.deliver_batch(session, [alert()])

    (am,) = receiver.bodies("/am/api/v2/alerts")
    assert am[0]["labels"] == {"alertname": "hash_match", "severity": "critical",
                               "target_id": "i-1", "dedup_key": "hash_match:image:i-1"}
    assert am[0]["annotations"] == {"summary": alert().summary,
                                    "runbook_url": "docs/runbook.md#hash_match"}
    assert am[0]["startsAt"] == "2025-02-04T02:13:05Z"
    assert am[0]["endsAt"] > am[0]["startsAt"]

    (pd,) = receiver.bodies("/pd")
    assert pd["routing_key"] == "rk-123" and pd["event_action"] == "trigger"
    assert pd["dedup_key"] == "hash_match:image:i-1"
    assert pd["payload"]["severity"] == "critical" and pd["payload"]["class"] == "hash_match"
    assert pd["payload"]["summary"] == alert().summary
    assert pd["links"][0]["href"] == "docs/runbook.md#hash_match"

    ((_, body, headers),) = [r for r in receiver.requests if r[0] == "/hook"]
    assert verify_webhook(SECRET, body, headers)
    assert not verify_webhook(SECRET, body.replace(b"critical", b"low"), headers)
    assert not verify_webhook("other-secret", body, headers)
    stale = int(headers["X-Vigil-Timestamp"]) + 3600
    assert not verify_webhook(SECRET, body, headers, now=stale)  # replayed an hour later
    event = json.loads(body)
    assert event["type"] == "safety.alert" and event["data"]["alert_id"] == "alr-1"
    assert headers["X-Vigil-Event-Id"] == "alr-1"
    assert count(metrics, "pagerduty", "delivered") == 1


async def test_resolved_alert_ends_the_incident(receiver: Receiver) -> None:
    d, _, _ = delivery(receiver)
    resolved = alert(alert_id="alr-1-resolved", evidence={"resolved": True})
    async with aiohttp.ClientSession() as session:
        await d.deliver_batch(session, [resolved])
    (pd,) = receiver.bodies("/pd")
    assert pd == {"routing_key": "rk-123", "event_action": "resolve",
                  "dedup_key": "hash_match:image:i-1"}
    (am,) = receiver.bodies("/am/api/v2/alerts")
    assert am[0]["endsAt"] <= datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


async def test_failures_are_retried_with_backoff_until_delivered(receiver: Receiver) -> None:
    receiver.failures = 4  # e.g. the pager is down for a while
    d, sleeps, metrics = delivery(receiver, initial_backoff=1.0, max_backoff=3.0)
    async with aiohttp.ClientSession() as session:
        await d.deliver_batch(session, [alert()])
    assert len(receiver.bodies("/pd")) == 1
    assert len(receiver.bodies("/am/api/v2/alerts")) == 1
    assert len(receiver.bodies("/hook")) == 1
    assert len(sleeps) >= 1
    assert all(0.8 * min(3.0, 2 ** i) <= s <= min(3.0, 2 ** i) for i, s in enumerate(sleeps))
    retries = sum(count(metrics, n, "retry") for n in ("pagerduty", "alertmanager", "webhook"))
    assert retries == 4


async def test_connection_refused_is_retried(receiver: Receiver) -> None:
    d, sleeps, _ = delivery(receiver)
    d.notifiers = {"alertmanager": build_notifiers(
        alertmanager_url="http://127.0.0.1:9")["alertmanager"]}  # nothing listens on port 9
    calls = 0

    async def sleep(seconds: float) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:  # the pager comes back: point at the receiver
            d.notifiers = build_notifiers(alertmanager_url=receiver.url.rstrip("/") + "/am")

    d.sleep = sleep
    async with aiohttp.ClientSession() as session:
        await d.deliver_batch(session, [alert()])
    assert calls == 3 and len(receiver.bodies("/am/api/v2/alerts")) == 1


async def test_a_rejected_alert_is_given_up_after_some_attempts(receiver: Receiver) -> None:
    receiver.failures, receiver.fail_with = 1000, 400
    d, sleeps, metrics = delivery(receiver, max_rejected_attempts=3)
    d.notifiers = {"pagerduty": d.notifiers["pagerduty"]}
    async with aiohttp.ClientSession() as session:
        await d.deliver_batch(session, [alert()])
    assert count(metrics, "pagerduty", "rejected") == 1
    assert count(metrics, "pagerduty", "retry") == 2 and len(sleeps) == 2


async def test_repeated_alert_ids_are_delivered_once(receiver: Receiver) -> None:
    d, _, metrics = delivery(receiver)
    async with aiohttp.ClientSession() as session:
        await d.deliver_batch(session, [alert(), alert()])
        await d.deliver_batch(session, [alert()])  # redelivered from Kafka
    assert len(receiver.bodies("/pd")) == 1
    assert count(metrics, "-", "duplicate") == 2


async def test_routes_follow_severity_and_staffed_hours(receiver: Receiver) -> None:
    d, _, _ = delivery(receiver)
    day_medium = alert(alert_id="a-2", kind="thread_raid", severity="medium", first_seen=DAY)
    night_high = alert(alert_id="a-3", kind="thread_raid", severity="high", first_seen=NIGHT)
    day_low = alert(alert_id="a-4", kind="thread_raid", severity="low", first_seen=DAY)
    assert d.destinations(day_medium) == ["alertmanager", "webhook"]
    assert d.destinations(night_high) == ["pagerduty", "alertmanager", "webhook"]
    assert d.destinations(day_low) == []


async def test_unacknowledged_critical_alert_is_paged_again(receiver: Receiver) -> None:
    clock = [0.0]
    d, _, metrics = delivery(receiver, clock=lambda: clock[0])
    async with aiohttp.ClientSession() as session:
        await d.deliver_batch(session, [alert()])
        assert await d.repage_due(session) == 0
        clock[0] += POLICY.paging.repage_after_minutes * 60
        assert await d.repage_due(session) == 1
        pages = receiver.bodies("/pd")
        assert [p["dedup_key"] for p in pages] == ["hash_match:image:i-1",
                                                   "hash_match:image:i-1:repage1"]
        assert pages[1]["payload"]["summary"].startswith("[unacknowledged 15 min]")
        # a moderator handles it: the resolve closes the incident and its re-page
        await d.deliver_batch(session, [alert(alert_id="alr-1-resolved",
                                              evidence={"resolved": True})])
        await d.repage_due(session)
        clock[0] += 10_000
        assert await d.repage_due(session) == 0
    actions = [(p["event_action"], p["dedup_key"]) for p in receiver.bodies("/pd")]
    assert ("resolve", "hash_match:image:i-1") in actions
    assert ("resolve", "hash_match:image:i-1:repage1") in actions
    assert metrics.registry.get_sample_value("vigil_pager_repages_total") == 1


def test_half_configured_destinations_are_refused() -> None:
    with pytest.raises(ValueError, match="VIGIL_WEBHOOK_SECRET"):
        build_notifiers(webhook_url="http://x/hook")
    with pytest.raises(ValueError, match="ROUTING_KEY"):
        build_notifiers(pagerduty_url="http://x/pd")
    assert "rk" not in repr(build_notifiers(pagerduty_routing_key="rk-secret"))

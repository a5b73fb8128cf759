"""Forum webhook: delivers verdicts and takedowns to a forum that has no Kafka client.

Many forums cannot consume Kafka (and librdkafka clients cope badly with the embedded broker), so
this role POSTs every `safety.verdicts.v1` and `safety.takedowns.v1` event — the signed CloudEvent,
byte for byte as on the topic — to `VIGIL_FORUM_WEBHOOK_URL`, with the same transport signature as
the alert webhook (`X-Vigil-Timestamp`, `X-Vigil-Signature` over timestamp + body, keyed by
`VIGIL_FORUM_WEBHOOK_SECRET`; `X-Vigil-Event-Id` for dedup).

Guarantees, the same as the topics': at-least-once, and in order per content. Events of one
content share a Kafka key and so a partition; within a batch the agent delivers each key's events
one after another (different keys in parallel) and does not ask for the next batch until every
event of this one was delivered, so offsets are committed only after delivery. A forum outage
delays decisions; it loses none. A request the forum *rejects* (4xx other than 408/429) is retried
`notify_max_rejected_attempts` times and then counted as `rejected` and logged, so one poison
event cannot stop every later takedown.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timezone
from typing import Any

import aiohttp
import msgspec

from agents.context import AgentContext
from agents.metrics import Metrics
from agents.notifiers.base import DeliveryError
from agents.notifiers.webhook import signed_body
from streams.topics import TAKEDOWNS, VERDICTS

NAME = "forum_webhook"
DESTINATION = "forum_webhook"
log = logging.getLogger(__name__)


class Record:
    """One event to deliver: its Kafka key (content id), id (dedup) and raw signed bytes."""

    __slots__ = ("key", "event_id", "body")

    def __init__(self, key: bytes | None, event_id: str, body: bytes) -> None:
        self.key = key
        self.event_id = event_id
        self.body = body


class ForumDelivery:
    """Ordered-per-key, retried delivery of a batch (no faust: tested with a fake sleep)."""

    def __init__(
        self,
        url: str,
        secret: bytes,
        metrics: Metrics,
        *,
        initial_backoff: float = 0.5,
        max_backoff: float = 30.0,
        max_rejected_attempts: int = 5,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        if not secret:
            raise ValueError("VIGIL_FORUM_WEBHOOK_SECRET is required: the forum must verify "
                             "every request")
        self.url = url
        self._secret = secret
        self.metrics = metrics
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.max_rejected_attempts = max_rejected_attempts
        self.sleep = sleep

    def __repr__(self) -> str:
        return f"ForumDelivery(url={self.url!r})"

    async def deliver_batch(self, session: aiohttp.ClientSession,
                            records: Sequence[Record]) -> None:
        """Deliver every record; records with the same key strictly in their order."""
        by_key: dict[bytes | None, list[Record]] = {}
        for record in records:
            by_key.setdefault(record.key, []).append(record)
        await asyncio.gather(*(self._deliver_in_order(session, rs) for rs in by_key.values()))

    async def _deliver_in_order(self, session: aiohttp.ClientSession,
                                records: list[Record]) -> None:
        for record in records:
            await self._deliver_one(session, record)

    async def _deliver_one(self, session: aiohttp.ClientSession, record: Record) -> None:
        attempt = rejected = 0
        while True:
            error = await self._attempt(session, record)
            if error is None:
                self.metrics.pager_deliveries.labels(DESTINATION, "delivered").inc()
                return
            if not error.retryable:
                rejected += 1
                if rejected >= self.max_rejected_attempts:
                    self.metrics.pager_deliveries.labels(DESTINATION, "rejected").inc()
                    log.error("forum rejected %s %d times, giving up: %s",
                              record.event_id, rejected, error)
                    return
            self.metrics.pager_deliveries.labels(DESTINATION, "retry").inc()
            log.warning("forum webhook %s failed (attempt %d), retrying: %s",
                        record.event_id, attempt + 1, error)
            await self.sleep(min(self.max_backoff, self.initial_backoff * 2 ** attempt)
                             * random.uniform(0.8, 1))  # noqa: S311 - jitter, not crypto
            attempt += 1

    async def _attempt(self, session: aiohttp.ClientSession,
                       record: Record) -> DeliveryError | None:
        body, headers = signed_body(record.body, self._secret, datetime.now(timezone.utc),
                                    record.event_id)
        headers["Content-Type"] = "application/cloudevents+json"
        started = time.perf_counter()
        try:
            async with session.post(self.url, data=body, headers=headers) as response:
                if response.status < 300:
                    await response.read()
                    return None
                text = (await response.text(errors="replace"))[:200]
                retryable = response.status >= 500 or response.status in (408, 429)
                return DeliveryError(f"HTTP {response.status}: {text}", retryable=retryable,
                                     status=response.status)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return DeliveryError(f"{type(exc).__name__}: {exc}")
        finally:
            self.metrics.pager_delivery_seconds.labels(DESTINATION).observe(
                time.perf_counter() - started)


class _Id(msgspec.Struct):
    id: str = ""


_ID = msgspec.json.Decoder(_Id)


def _event_id(body: bytes) -> str:
    """The CloudEvent `id`, read without decoding the rest (the body is forwarded untouched)."""
    try:
        return _ID.decode(body).id
    except msgspec.DecodeError:
        return ""


def register(ctx: AgentContext) -> None:
    """Register delivery of verdicts and takedowns when `VIGIL_FORUM_WEBHOOK_URL` is set."""
    s = ctx.settings
    url: str | None = getattr(s, "forum_webhook_url", None)
    if not url:
        log.info("forum_webhook: VIGIL_FORUM_WEBHOOK_URL unset, role idle")
        return
    secret_value = getattr(s, "forum_webhook_secret", None)
    secret = secret_value.get_secret_value().encode() if secret_value is not None else b""
    delivery = ForumDelivery(
        url, secret, ctx.metrics,
        initial_backoff=float(getattr(s, "notify_retry_initial_seconds", 0.5)),
        max_backoff=float(getattr(s, "notify_retry_max_seconds", 30.0)),
        max_rejected_attempts=int(getattr(s, "notify_max_rejected_attempts", 5)),
    )
    timeout = aiohttp.ClientTimeout(total=float(getattr(s, "notify_timeout_seconds", 10.0)))

    for spec in (VERDICTS, TAKEDOWNS):
        batch_seconds = ctx.metrics.agent_batch_seconds.labels(f"{NAME}:{spec.name}")

        async def post_to_forum(stream: Any, batch_seconds: Any = batch_seconds) -> None:
            async with aiohttp.ClientSession(timeout=timeout) as session:
                async for events in stream.take_events(s.batch_size, s.batch_within):
                    with batch_seconds.time():
                        records = [Record(e.message.key, _event_id(e.value), e.value)
                                   for e in events if e.value]
                        # offsets of this batch commit only after this returns
                        await delivery.deliver_batch(session, records)

        kind = spec.name.split(".")[1]
        post_to_forum.__name__ = post_to_forum.__qualname__ = f"post_{kind}_to_forum"
        ctx.app.agent(ctx.topic(spec), name=f"vigil.forum_webhook.post_{kind}_to_forum")(
            post_to_forum)

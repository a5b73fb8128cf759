"""A small client for forums: publish posts/images/reports, receive verified verdicts/takedowns.

It sits in `streams/` (the contract layer) so a forum can use it without the pipeline: the
standard library for HTTP ingest and webhook signatures, `streams.signing` for event signatures,
and aiokafka only if you consume from Kafka (imported on use). Recipes for other languages
(curl, verifying the HMAC) are in docs/forum-client.md.

    client = ForumClient("http://vigil:8080")
    client.publish(new_post(post_id="p1", thread_id="t1", author_id="u1", body="hi"))

    # in your webhook handler (Vigil signs each webhook body with the shared secret):
    if not verify_webhook(secret, body, headers): return 401
    event = json.loads(body)            # a CloudEvent: alert, verdict or takedown
    if is_signed_event(event) and not verify(event, signing_keys): return 401
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from streams.signing import verify

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "ForumClient",
    "IngestError",
    "consume_decisions",
    "is_signed_event",
    "new_image",
    "new_post",
    "new_report",
    "verify",
    "verify_webhook",
    "webhook_signature",
]

TIMESTAMP_HEADER = "X-Vigil-Timestamp"
SIGNATURE_HEADER = "X-Vigil-Signature"
EVENT_ID_HEADER = "X-Vigil-Event-Id"
DEFAULT_TOLERANCE_S = 300


# ------------------------------------------------------------------------- webhook signatures


def webhook_signature(secret: bytes | str, timestamp: int | str, body: bytes) -> str:
    """`v1=` + hex HMAC-SHA256 over `"<timestamp>." + body` (the raw request body).

    Signing the timestamp with the body stops replays: a receiver rejects timestamps older
    than its tolerance, and an attacker cannot change one without the secret.
    """
    key = secret.encode() if isinstance(secret, str) else secret
    mac = hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"v1={mac}"


def verify_webhook(secret: bytes | str, body: bytes, headers: Mapping[str, str], *,
                   tolerance_s: float = DEFAULT_TOLERANCE_S, now: float | None = None) -> bool:
    """True when a webhook request from Vigil is authentic and fresh (constant-time compare)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    timestamp = lowered.get(TIMESTAMP_HEADER.lower())
    signature = lowered.get(SIGNATURE_HEADER.lower())
    if not timestamp or not signature or not timestamp.isdigit():
        return False
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > tolerance_s:
        return False
    return hmac.compare_digest(webhook_signature(secret, timestamp, body), signature)


def is_signed_event(event: Mapping[str, Any]) -> bool:
    """Verdicts and takedowns carry `sigkeyid`/`signature` (alerts do not)."""
    return event.get("type") in ("safety.verdict", "safety.takedown")


# ------------------------------------------------------------------------- building events


def _envelope(type_: str, data: dict[str, Any], source: str, event_id: str | None,
              at: datetime | None) -> dict[str, Any]:
    when = (at or datetime.now(timezone.utc)).isoformat().replace("+00:00", "Z")
    return {"specversion": "1.0", "id": event_id or f"evt-{uuid.uuid4().hex}",
            "source": source, "type": type_, "time": when,
            "datacontenttype": "application/json", "data": data}


def _author(author_id: str, created_at: str | None, is_staff: bool) -> dict[str, Any]:
    author: dict[str, Any] = {"id": author_id, "is_staff": is_staff}
    if created_at:
        author["created_at"] = created_at
    return author


def new_post(*, post_id: str, thread_id: str, author_id: str, body: str,
             author_created_at: str | None = None, board: str | None = None,
             image_ids: Iterable[str] = (), source: str = "forum/client",
             event_id: str | None = None, at: datetime | None = None) -> dict[str, Any]:
    """A `forum.post.created` CloudEvent (`at` is when it happened on the forum)."""
    data: dict[str, Any] = {"post_id": post_id, "thread_id": thread_id, "body": body,
                            "author": _author(author_id, author_created_at, False),
                            "image_ids": list(image_ids)}
    if board:
        data["board"] = board
    return _envelope("forum.post.created", data, source, event_id, at)


def new_image(*, image_id: str, author_id: str, data: bytes | None = None, url: str | None = None,
              post_id: str | None = None, thread_id: str | None = None,
              content_type: str | None = None, author_created_at: str | None = None,
              source: str = "forum/client", event_id: str | None = None,
              at: datetime | None = None) -> dict[str, Any]:
    """A `forum.image.uploaded` CloudEvent with inline bytes (`data`) or a claim-check `url`."""
    if (data is None) == (url is None):
        raise ValueError("give exactly one of `data` or `url`")
    payload: dict[str, Any] = {"image_id": image_id,
                               "author": _author(author_id, author_created_at, False)}
    for key, value in (("post_id", post_id), ("thread_id", thread_id),
                       ("content_type", content_type), ("url", url)):
        if value is not None:
            payload[key] = value
    if data is not None:
        payload["data_b64"] = base64.b64encode(data).decode()
        payload["sha256"] = hashlib.sha256(data).hexdigest()
    return _envelope("forum.image.uploaded", payload, source, event_id, at)


def new_report(*, report_id: str, target_type: str, target_id: str, reporter_id: str,
               reason: str | None = None, thread_id: str | None = None,
               source: str = "forum/client", event_id: str | None = None,
               at: datetime | None = None) -> dict[str, Any]:
    """A `forum.report.created` CloudEvent."""
    data: dict[str, Any] = {"report_id": report_id, "target_type": target_type,
                            "target_id": target_id, "reporter": {"id": reporter_id}}
    if reason:
        data["reason"] = reason
    if thread_id:
        data["thread_id"] = thread_id
    return _envelope("forum.report.created", data, source, event_id, at)


# ------------------------------------------------------------------------- HTTP ingest


class IngestError(RuntimeError):
    """Vigil refused a batch (HTTP 4xx/5xx); `errors` lists `{index, error}` when it said why."""

    def __init__(self, status: int, body: bytes) -> None:
        try:
            self.errors: list[dict[str, Any]] = json.loads(body).get("errors", [])
        except (ValueError, AttributeError):
            self.errors = []
        super().__init__(f"HTTP {status}: {body[:300].decode('utf-8', 'replace')}")
        self.status = status


class ForumClient:
    """Publishes events through Vigil's HTTP ingest (`POST /v1/events`), stdlib only."""

    def __init__(self, base_url: str, *, timeout: float = 10.0,
                 headers: Mapping[str, str] | None = None) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"expected an http(s) URL, got {base_url!r}")
        self.url = base_url.rstrip("/") + "/v1/events"
        self.timeout = timeout
        self.headers = dict(headers or {})

    def publish(self, *events: dict[str, Any]) -> list[str]:
        """Send one or more events (one request); return their ids. Raises `IngestError`.

        Safe to retry: ids are the dedup key, so a resent event is not processed twice.
        """
        body = json.dumps(events[0] if len(events) == 1 else list(events)).encode()
        request = urllib.request.Request(
            self.url, data=body, method="POST",
            headers={"Content-Type": "application/cloudevents+json", **self.headers})
        try:
            # nosec B310: the scheme is checked to be http(s) in __init__
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # nosec B310
                answer = json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            raise IngestError(exc.code, exc.read()) from None
        return list(answer.get("ids", [e["id"] for e in events]))


# ------------------------------------------------------------------------- Kafka consumer


async def consume_decisions(bootstrap: str, keys: Mapping[str, bytes | str], *,
                            group_id: str, prefix: str = "",
                            topics: Iterable[str] = ("safety.verdicts.v1",
                                                     "safety.takedowns.v1"),
                            ) -> AsyncIterator[dict[str, Any]]:
    """Verdicts and takedowns from Kafka whose signature verifies (others are skipped).

    Commits after each event is handed out and the caller asks for the next one, so an event
    is processed at least once; dedup by the CloudEvent `id`. Needs `aiokafka`.
    """
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(*(prefix + t for t in topics), bootstrap_servers=bootstrap,
                                group_id=group_id, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        async for message in consumer:
            if message.value and verify(message.value, keys):
                yield json.loads(message.value)
            await consumer.commit()
    finally:
        await consumer.stop()

"""Signed webhook: the alert CloudEvent as JSON, HMAC-signed with a timestamp.

Headers: `X-Vigil-Timestamp` (unix seconds), `X-Vigil-Signature: v1=<hex HMAC-SHA256 of
"<timestamp>." + body>` keyed by `VIGIL_WEBHOOK_SECRET`, and `X-Vigil-Event-Id` (dedup). The
receiver checks both with `streams.forum_client.verify_webhook` (recipe for other languages in
docs/forum-client.md) and rejects stale timestamps, which stops replays.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

import msgspec

from agents.notifiers.base import HttpNotifier, json_headers
from streams.events import SPECVERSION, AlertData, CloudEvent
from streams.forum_client import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    webhook_signature,
)

_ENCODER = msgspec.json.Encoder()


class WebhookNotifier(HttpNotifier):
    """POSTs signed alert events to `VIGIL_WEBHOOK_URL`."""

    name: ClassVar[str] = "webhook"

    def __init__(self, url: str, secret: bytes) -> None:
        if not secret:
            raise ValueError("a webhook needs VIGIL_WEBHOOK_SECRET: receivers must verify it")
        self.url = url
        self._secret = secret

    def __repr__(self) -> str:
        return f"WebhookNotifier(url={self.url!r})"

    def request(self, alert: AlertData, *, resolved: bool, now: datetime
                ) -> tuple[str, bytes, dict[str, str]]:
        event = CloudEvent(specversion=SPECVERSION, id=alert.alert_id, source="vigil/notify",
                           type="safety.alert", time=now, data=alert)
        return self.url, *signed_body(_ENCODER.encode(event), self._secret, now, alert.alert_id)


def signed_body(body: bytes, secret: bytes, now: datetime, event_id: str
                ) -> tuple[bytes, dict[str, str]]:
    """(body, headers) of a signed webhook request."""
    timestamp = str(int(now.timestamp()))
    return body, json_headers(**{
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: webhook_signature(secret, timestamp, body),
        EVENT_ID_HEADER: event_id,
    })


"""PagerDuty Events API v2: `trigger` / `resolve` events with a `dedup_key`.

The same `dedup_key` as everywhere else, so a redelivered alert adds to the open incident
instead of opening a second one, and a resolved alert closes it. Severity maps
critical→critical, high→error, medium→warning, low→info.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

import orjson

from agents.notifiers.base import HttpNotifier, iso, json_headers
from streams.events import AlertData

DEFAULT_URL = "https://events.pagerduty.com/v2/enqueue"
SEVERITY = {"critical": "critical", "high": "error", "medium": "warning", "low": "info"}


class PagerDutyNotifier(HttpNotifier):
    """Sends to `VIGIL_PAGERDUTY_URL` with `VIGIL_PAGERDUTY_ROUTING_KEY` (integration key)."""

    name: ClassVar[str] = "pagerduty"

    def __init__(self, routing_key: str, url: str | None = None) -> None:
        self.url = url or DEFAULT_URL
        self._routing_key = routing_key

    def __repr__(self) -> str:  # never print the routing key
        return f"PagerDutyNotifier(url={self.url!r})"

    def body(self, alert: AlertData, *, resolved: bool, now: datetime) -> dict[str, object]:
        dedup_key = alert.dedup_key or alert.alert_id
        if resolved:
            return {"routing_key": self._routing_key, "event_action": "resolve",
                    "dedup_key": dedup_key}
        details: dict[str, object] = {"alert_id": alert.alert_id, "count": alert.count,
                                      "evidence": alert.evidence}
        if alert.target is not None:
            details["target_id"] = alert.target.id
            details["target_type"] = alert.target.type
        body: dict[str, object] = {
            "routing_key": self._routing_key,
            "event_action": "trigger",
            "dedup_key": dedup_key,
            "payload": {
                "summary": alert.summary[:1024],
                "source": "vigil",
                "severity": SEVERITY.get(alert.severity, "error"),
                "timestamp": iso(alert.first_seen or now),
                "class": alert.kind,
                "component": alert.target.type if alert.target else "pipeline",
                "custom_details": details,
            },
        }
        if alert.runbook_url:
            body["links"] = [{"href": alert.runbook_url, "text": "Runbook"}]
        return body

    def request(self, alert: AlertData, *, resolved: bool, now: datetime
                ) -> tuple[str, bytes, dict[str, str]]:
        body = self.body(alert, resolved=resolved, now=now)
        return self.url, orjson.dumps(body, default=str), json_headers()

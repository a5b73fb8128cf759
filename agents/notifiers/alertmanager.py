"""Prometheus Alertmanager, API v2: `POST /api/v2/alerts` with a list of one alert.

Labels identify the alert (Alertmanager groups and deduplicates on them): `alertname` (= kind),
`severity`, `target_id` (when the alert has a target) and `dedup_key`. Annotations carry
`summary` and `runbook_url`. A firing alert gets `endsAt` = now + the policy's
`alertmanager_ttl_minutes` (Alertmanager would otherwise resolve it after its
`resolve_timeout`, as if its source had stopped re-sending); a resolved one gets `endsAt` = now.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import ClassVar

import orjson

from agents.notifiers.base import HttpNotifier, iso, json_headers
from streams.events import AlertData


class AlertmanagerNotifier(HttpNotifier):
    """Posts alerts to one Alertmanager (`VIGIL_ALERTMANAGER_URL`, e.g. http://am:9093)."""

    name: ClassVar[str] = "alertmanager"

    def __init__(self, url: str, ttl_minutes: float = 360) -> None:
        self.url = url.rstrip("/") + "/api/v2/alerts"
        self.ttl = timedelta(minutes=ttl_minutes)

    def body(self, alert: AlertData, *, resolved: bool, now: datetime) -> list[dict[str, object]]:
        labels = {"alertname": alert.kind, "severity": alert.severity,
                  "dedup_key": alert.dedup_key or alert.alert_id}
        if alert.target is not None:
            labels["target_id"] = alert.target.id
        annotations = {"summary": alert.summary}
        if alert.runbook_url:
            annotations["runbook_url"] = alert.runbook_url
        starts = alert.first_seen or now
        return [{
            "labels": labels,
            "annotations": annotations,
            "startsAt": iso(starts),
            "endsAt": iso(now if resolved else max(now, starts) + self.ttl),
        }]

    def request(self, alert: AlertData, *, resolved: bool, now: datetime
                ) -> tuple[str, bytes, dict[str, str]]:
        return self.url, orjson.dumps(self.body(alert, resolved=resolved, now=now)), json_headers()

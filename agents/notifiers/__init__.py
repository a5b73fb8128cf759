"""Pager destinations behind one small `Notifier` protocol (read `base.py` first).

Each implementation is one short class that builds its destination's request:
`alertmanager.AlertmanagerNotifier` (Alertmanager API v2), `pagerduty.PagerDutyNotifier`
(Events API v2), `webhook.WebhookNotifier` (signed JSON). `build_notifiers` makes the ones
whose settings are present.
"""

from __future__ import annotations

from agents.notifiers.alertmanager import AlertmanagerNotifier
from agents.notifiers.base import DeliveryError, HttpNotifier, Notifier, is_resolved
from agents.notifiers.pagerduty import PagerDutyNotifier
from agents.notifiers.webhook import WebhookNotifier

__all__ = [
    "AlertmanagerNotifier",
    "DeliveryError",
    "HttpNotifier",
    "Notifier",
    "PagerDutyNotifier",
    "WebhookNotifier",
    "build_notifiers",
    "is_resolved",
]


def build_notifiers(*, alertmanager_url: str | None = None, alertmanager_ttl_minutes: float = 360,
                    pagerduty_url: str | None = None, pagerduty_routing_key: str | None = None,
                    webhook_url: str | None = None, webhook_secret: str | None = None
                    ) -> dict[str, Notifier]:
    """The configured destinations by name (PagerDuty needs its routing key, a webhook its
    secret: a half-configured destination raises ValueError naming the missing setting)."""
    notifiers: dict[str, Notifier] = {}
    if alertmanager_url:
        notifiers["alertmanager"] = AlertmanagerNotifier(alertmanager_url,
                                                         alertmanager_ttl_minutes)
    if pagerduty_routing_key:
        notifiers["pagerduty"] = PagerDutyNotifier(pagerduty_routing_key, pagerduty_url)
    elif pagerduty_url:
        raise ValueError("VIGIL_PAGERDUTY_URL is set but VIGIL_PAGERDUTY_ROUTING_KEY is not")
    if webhook_url:
        if not webhook_secret:
            raise ValueError("VIGIL_WEBHOOK_URL is set but VIGIL_WEBHOOK_SECRET is not: "
                             "webhooks are always signed")
        notifiers["webhook"] = WebhookNotifier(webhook_url, webhook_secret.encode())
    return notifiers

"""The `Notifier` protocol: one small class per pager destination, and the HTTP it shares.

A notifier turns one alert into one HTTP request in its destination's format and raises
`DeliveryError` when the destination did not take it. Retrying, routing and offsets are the
notify agent's job (`agents.notify`), so each notifier stays a short payload builder.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Protocol

import aiohttp

from streams.events import AlertData


class DeliveryError(Exception):
    """A delivery that failed; `retryable` False means the destination rejected the request
    itself (a 4xx other than 408/429), so sending the same bytes again will not help."""

    def __init__(self, message: str, *, retryable: bool = True, status: int | None = None
                 ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status


class Notifier(Protocol):
    """A pager destination (`alertmanager`, `pagerduty`, `webhook`)."""

    name: ClassVar[str]

    def request(self, alert: AlertData, *, resolved: bool, now: datetime
                ) -> tuple[str, bytes, dict[str, str]]:
        """(url, body, headers) of the request that delivers `alert` (pure: tested directly)."""
        ...

    async def deliver(self, session: aiohttp.ClientSession, alert: AlertData, *,
                      resolved: bool, now: datetime) -> None:
        """Send `alert`; raise `DeliveryError` unless the destination accepted it."""
        ...


class HttpNotifier:
    """Shared `deliver`: POST `request()` and map the status to success or `DeliveryError`."""

    name: ClassVar[str] = "http"

    def request(self, alert: AlertData, *, resolved: bool, now: datetime
                ) -> tuple[str, bytes, dict[str, str]]:
        raise NotImplementedError

    async def deliver(self, session: aiohttp.ClientSession, alert: AlertData, *,
                      resolved: bool, now: datetime) -> None:
        url, body, headers = self.request(alert, resolved=resolved, now=now)
        try:
            async with session.post(url, data=body, headers=headers) as response:
                if response.status < 300:
                    await response.read()
                    return
                text = (await response.text(errors="replace"))[:200]
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise DeliveryError(f"{self.name}: {type(exc).__name__}: {exc}") from None
        retryable = response.status >= 500 or response.status in (408, 429)
        raise DeliveryError(f"{self.name}: HTTP {response.status}: {text}",
                            retryable=retryable, status=response.status)


def is_resolved(alert: AlertData) -> bool:
    """Alerts that end an incident carry `evidence.resolved: true` (same `dedup_key`)."""
    return alert.evidence.get("resolved") is True


def iso(value: datetime) -> str:
    """RFC 3339 with a `Z`, as pager APIs expect."""
    return value.isoformat().replace("+00:00", "Z")


def json_headers(**extra: str) -> dict[str, Any]:
    return {"Content-Type": "application/json", **extra}

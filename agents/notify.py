"""Notify agent: delivers `safety.alerts.v1` to the pager — Alertmanager, PagerDuty, webhook.

Delivery is what the offset commit waits for. The agent takes a batch of alerts and does not
ask for the next batch until every (alert, destination) of this one is delivered, retrying with
exponential backoff; faust acks a batch's events only when the agent asks for the next batch,
so an alert's offset is committed only after it reached every destination its route names. A
pager outage therefore delays alerts (the batch waits, then later alerts follow in order) but
never loses one; a crash mid-retry redelivers the batch, and the destinations dedup it
(`dedup_key` labels, PagerDuty's `dedup_key`, the webhook's event id).

A destination that *rejects* an alert (HTTP 4xx other than 408/429: malformed, bad routing key)
is retried `notify_max_rejected_attempts` times, then logged and counted as `rejected`, so one
poison alert cannot stop paging for every later incident.

Routing comes from the policy (`[[paging.routes]]`, by kind, severity and staffed hours at the
alert's event time). A critical alert that is not resolved (by a moderator's review) within the
policy's `repage_after_minutes` is paged again to `paging.escalation` under a new dedup key
(`<key>:repage<n>`), so PagerDuty opens a fresh incident instead of merging into the one
nobody acknowledged. Re-page state is in memory: a restart forgets it (the first page was
delivered; PagerDuty's own escalation policy is the backstop).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from agents.context import AgentContext, decode_events
from agents.metrics import Metrics
from agents.notifiers import DeliveryError, Notifier, build_notifiers, is_resolved
from agents.policy import Policy, PolicyStore
from streams.events import AlertData
from streams.topics import ALERTS

NAME = "notify"
log = logging.getLogger(__name__)
_DONE_MEMORY = 100_000  # alert ids remembered as delivered (dedup of redeliveries)
_MAX_REPAGES = 10


@dataclass
class Unacked:
    """A delivered critical alert nobody has resolved yet."""

    alert: AlertData
    since: float  # monotonic s of the last (re)page
    repages: list[str] = field(default_factory=list)  # dedup keys of re-pages sent


class Delivery:
    """Routing, retries, dedup and re-pages, without faust (tested with a fake clock/sleep)."""

    def __init__(
        self,
        notifiers: Mapping[str, Notifier],
        policy: Callable[[], Policy],
        metrics: Metrics,
        *,
        initial_backoff: float = 0.5,
        max_backoff: float = 30.0,
        max_rejected_attempts: int = 5,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.notifiers = dict(notifiers)
        self.policy = policy
        self.metrics = metrics
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.max_rejected_attempts = max_rejected_attempts
        self.sleep = sleep
        self.clock = clock
        self.done: OrderedDict[str, None] = OrderedDict()
        self.unacked: dict[str, Unacked] = {}
        self.resolve_repages: list[tuple[AlertData, str]] = []  # re-pages whose alert resolved
        self._warned: set[str] = set()

    def destinations(self, alert: AlertData) -> list[str]:
        """Configured destinations of the alert's route (unconfigured ones are counted)."""
        names = []
        for name in self.policy().route(alert.kind, alert.severity, alert.first_seen):
            if name in self.notifiers:
                names.append(name)
            else:
                self.metrics.pager_deliveries.labels(name, "not_configured").inc()
                if name not in self._warned:
                    self._warned.add(name)
                    log.warning("policy routes alerts to %s, which is not configured", name)
        return names

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with jitter (so many workers do not retry in lockstep)."""
        return min(self.max_backoff, self.initial_backoff * 2 ** attempt) * random.uniform(0.8, 1)

    async def deliver_batch(self, session: aiohttp.ClientSession,
                            alerts: list[AlertData]) -> None:
        """Deliver every alert to every destination of its route; return only when done."""
        work: list[tuple[AlertData, str]] = []
        seen: set[str] = set()
        for alert in alerts:
            if alert.alert_id in self.done or alert.alert_id in seen:
                self.metrics.pager_deliveries.labels("-", "duplicate").inc()
                continue
            seen.add(alert.alert_id)
            work.extend((alert, name) for name in self.destinations(alert))
        await self._deliver(session, work)
        for alert in alerts:
            if alert.alert_id in seen:
                self._remember(alert)

    async def _deliver(self, session: aiohttp.ClientSession,
                       work: list[tuple[AlertData, str]]) -> None:
        rejected: dict[tuple[str, str], int] = {}
        attempt = 0
        while work:
            self.metrics.pager_pending.set(len(work))
            errors = await asyncio.gather(*(self._attempt(session, a, d) for a, d in work))
            retry = []
            for (alert, name), error in zip(work, errors, strict=True):
                if error is None:
                    self.metrics.pager_deliveries.labels(name, "delivered").inc()
                    continue
                if not error.retryable:
                    key = (alert.alert_id, name)
                    rejected[key] = rejected.get(key, 0) + 1
                    if rejected[key] >= self.max_rejected_attempts:
                        self.metrics.pager_deliveries.labels(name, "rejected").inc()
                        log.error("alert %s (%s) rejected by %s after %d attempts, giving up: %s",
                                  alert.alert_id, alert.kind, name, rejected[key], error)
                        continue
                self.metrics.pager_deliveries.labels(name, "retry").inc()
                log.warning("alert %s to %s failed (attempt %d), retrying: %s",
                            alert.alert_id, name, attempt + 1, error)
                retry.append((alert, name))
            work = retry
            if work:
                await self.sleep(self.backoff(attempt))
                attempt += 1
        self.metrics.pager_pending.set(0)

    async def _attempt(self, session: aiohttp.ClientSession, alert: AlertData,
                       name: str) -> DeliveryError | None:
        started = time.perf_counter()
        try:
            await self.notifiers[name].deliver(session, alert, resolved=is_resolved(alert),
                                               now=datetime.now(timezone.utc))
            return None
        except DeliveryError as exc:
            return exc
        except Exception as exc:  # noqa: BLE001 - a bug in one notifier must not lose alerts
            log.exception("notifier %s failed", name)
            return DeliveryError(f"{name}: {exc!r}")
        finally:
            self.metrics.pager_delivery_seconds.labels(name).observe(
                time.perf_counter() - started)

    def _remember(self, alert: AlertData) -> None:
        self.done[alert.alert_id] = None
        while len(self.done) > _DONE_MEMORY:
            self.done.popitem(last=False)
        key = alert.dedup_key or alert.alert_id
        if is_resolved(alert):
            entry = self.unacked.pop(key, None)
            if entry is not None:
                self.resolve_repages.extend((entry.alert, k) for k in entry.repages)
        elif alert.severity == "critical" and self.policy().paging.repage_after_minutes > 0:
            self.unacked.setdefault(key, Unacked(alert, self.clock()))

    async def repage_due(self, session: aiohttp.ClientSession) -> int:
        """Re-page critical alerts unacknowledged for `repage_after_minutes`; resolve the
        re-pages of alerts resolved since. Returns how many were re-paged."""
        pending: list[tuple[AlertData, str]] = []
        for original, key in self.resolve_repages:
            resolve = msgspec.structs.replace(
                original, alert_id=f"{original.alert_id}-{key}-resolved", dedup_key=key,
                evidence={**original.evidence, "resolved": True})
            pending.extend((resolve, n) for n in self.policy().paging.escalation
                           if n in self.notifiers)
        self.resolve_repages = []
        paging = self.policy().paging
        due = [e for e in self.unacked.values()
               if paging.repage_after_minutes > 0
               and self.clock() - e.since >= paging.repage_after_minutes * 60
               and len(e.repages) < _MAX_REPAGES]
        for entry in due:
            n = len(entry.repages) + 1
            base_key = entry.alert.dedup_key or entry.alert.alert_id
            key = f"{base_key}:repage{n}"
            minutes = round((paging.repage_after_minutes * n))
            repage = msgspec.structs.replace(
                entry.alert, alert_id=f"{entry.alert.alert_id}-repage{n}", dedup_key=key,
                summary=f"[unacknowledged {minutes} min] {entry.alert.summary}")
            entry.repages.append(key)
            entry.since = self.clock()
            pending.extend((repage, name) for name in paging.escalation if name in self.notifiers)
            self.metrics.pager_repages.inc()
        await self._deliver(session, pending)
        return len(due)


def _secret(value: Any) -> str | None:
    if value is None:
        return None
    getter = getattr(value, "get_secret_value", None)
    return str(getter() if getter else value)


def register(ctx: AgentContext) -> None:
    """Register the notify agent, its re-page timer and policy reload on `ctx.app`."""
    s = ctx.settings
    metrics = ctx.metrics
    policy_path: Path | None = getattr(s, "policy", None)
    store = PolicyStore(policy_path)
    notifiers = build_notifiers(
        alertmanager_url=getattr(s, "alertmanager_url", None),
        alertmanager_ttl_minutes=store.policy.paging.alertmanager_ttl_minutes,
        pagerduty_url=getattr(s, "pagerduty_url", None),
        pagerduty_routing_key=_secret(getattr(s, "pagerduty_routing_key", None)),
        webhook_url=getattr(s, "webhook_url", None),
        webhook_secret=_secret(getattr(s, "webhook_secret", None)),
    )
    if not notifiers:
        log.warning("notify: no destination configured (VIGIL_ALERTMANAGER_URL, "
                    "VIGIL_PAGERDUTY_URL/_ROUTING_KEY, VIGIL_WEBHOOK_URL/_SECRET): alerts are "
                    "read and dropped")
    delivery = Delivery(
        notifiers, store, metrics,
        initial_backoff=float(getattr(s, "notify_retry_initial_seconds", 0.5)),
        max_backoff=float(getattr(s, "notify_retry_max_seconds", 30.0)),
        max_rejected_attempts=int(getattr(s, "notify_max_rejected_attempts", 5)),
    )
    timeout = aiohttp.ClientTimeout(total=float(getattr(s, "notify_timeout_seconds", 10.0)))
    sessions: list[aiohttp.ClientSession] = []
    batch_seconds = metrics.agent_batch_seconds.labels(NAME)

    async def deliver_alerts(stream: Any) -> None:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            sessions.append(session)
            async for events in stream.take_events(s.batch_size, s.batch_within):
                with batch_seconds.time():
                    alerts = []
                    for raw, event, error in decode_events(ALERTS, events):
                        if event is None:
                            log.error("unreadable alert at %s offset %s skipped: %s",
                                      raw.message.topic, raw.message.offset, error)
                            continue
                        alerts.append(event.data)
                    # the batch's offsets are committed only after this returns (see above)
                    await delivery.deliver_batch(session, alerts)

    ctx.app.agent(ctx.topic(ALERTS), name="vigil.notify.deliver_alerts")(deliver_alerts)

    async def repage_unacknowledged() -> None:
        if sessions and not sessions[-1].closed:
            await delivery.repage_due(sessions[-1])

    ctx.app.timer(15.0, name="vigil.notify.repage_unacknowledged")(repage_unacknowledged)

    if policy_path is not None:
        async def reload_policy() -> None:
            await asyncio.to_thread(store.reload_if_changed)

        ctx.app.timer(float(getattr(s, "policy_reload_seconds", 2.0)),
                      name="vigil.notify.reload_policy")(reload_policy)

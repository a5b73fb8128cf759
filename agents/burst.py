"""Burst agent (role `burst`): report surges, thread raids, new-account swarms, text brigades
and image sprays, as alerts on `safety.alerts.v1`.

Thin by design: each faust agent iterates its topic in batches, hands every valid event with its
event time (the CloudEvent `time`, else the Kafka record timestamp — never the wall clock) to
the pure detectors of `agents.bursts` for that input partition, and sends the alerts they
return, with the alert id as the event id (same input → same ids; consumers dedup by `id`).
Unreadable events are skipped here: intake dead-letters them.

Partitioning (docs/burst.md): reports are keyed by target and posts by thread, so
`report_surge` and `thread_raid` are partition-local. `new_account_swarm` and `text_brigade`
need a board's posts in one place: `detect_thread_raids` forwards each post, unchanged, to the
internal topic `BY_BOARD` keyed by board. `image_spray` compares every image with every other,
so pdq signals are forwarded to the single-partition internal topic `PDQ_HASHES`.

Thresholds and staffed hours come from the policy (`VIGIL_POLICY`, its `[burst]` section),
re-read when the file changes: every detector group gets the new config and keeps its windows.
Moderators' reviews (`safety.reviews.v1`) feed one `ReporterAccuracy` per worker, which the
report detectors fold into each reporter's weight.

State is in memory, per input partition, bounded by the windows (keys expire when idle): a
restart or rebalance loses the open windows and incidents (an ongoing attack is detected again
from the events after the restart, under a new dedup key; an open incident is never resolved).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from agents.bursts import (
    BurstConfig,
    ImageSprayDetector,
    NewAccountSwarmDetector,
    ReporterAccuracy,
    ReportSurgeDetector,
    TextBrigadeDetector,
    ThreadRaidDetector,
    Watermarked,
)
from agents.context import AgentContext, decode_events
from agents.policy import Policy, PolicyStore
from streams.codec import encode
from streams.events import AlertData
from streams.topics import ALERTS, POSTS, REPORTS, REVIEWS, SIGNALS, TopicSpec

NAME = "burst"
SOURCE = "vigil/burst"
log = logging.getLogger(__name__)

#: Internal topics of this role (not contract): posts re-keyed by board, and pdq hashes.
BY_BOARD = "vigil.burst.posts-by-board.v1"
PDQ_HASHES = "vigil.burst.pdq.v1"


def policy_store(settings: Any) -> PolicyStore | None:
    """The policy file's store, or None when it cannot be read at start-up: burst detection
    then runs on the default thresholds (a broken policy must not stop it; decide, which acts
    on content, refuses to start instead)."""
    try:
        return PolicyStore(getattr(settings, "policy", None))
    except Exception as exc:  # noqa: BLE001 - PolicyError or OSError, logged and survived
        log.error("burst: policy not readable, default thresholds in force: %s", exc)
        return None


def event_time(event: Any, decoded: Any) -> float:
    """Event time in epoch seconds: CloudEvent `time`, else the Kafka record timestamp."""
    if decoded.time is not None:
        return float(decoded.time.timestamp())
    return float(event.message.timestamp or 0.0)


def register(ctx: AgentContext) -> None:
    """Register the burst agents on `ctx.app`."""
    settings: Any = ctx.settings
    metrics = ctx.metrics
    groups: list[Watermarked] = []  # every detector group, to reconfigure on a policy reload
    accuracy = ReporterAccuracy()  # one per worker: reviews write it, report detectors read it

    store = policy_store(settings)
    config = BurstConfig.from_policy(store.policy) if store is not None else BurstConfig()

    def apply(policy: Policy) -> None:
        """On the event loop, between batches: every group (and groups made later) switch."""
        nonlocal config
        config = BurstConfig.from_policy(policy)
        for group in groups:
            group.reconfigure(config)
        log.warning("burst: thresholds of policy %s in force", policy.version)

    prefix = settings.topic_prefix
    by_board = ctx.app.topic(prefix + BY_BOARD, key_type=bytes, value_type=bytes,
                             key_serializer="raw", value_serializer="raw")
    pdq_hashes = ctx.app.topic(prefix + PDQ_HASHES, key_type=bytes, value_type=bytes,
                               key_serializer="raw", value_serializer="raw", partitions=1)

    def make_runner(
        name: str, spec: TopicSpec, factory: Callable[[], Watermarked],
        forward: Callable[[Any, Any], Any] | None = None,
    ) -> Callable[[Any], Any]:
        runners: dict[int, Watermarked] = {}
        batch_seconds = metrics.agent_batch_seconds.labels(NAME)

        async def run(stream: Any) -> None:
            async for events in stream.take_events(settings.batch_size, settings.batch_within):
                with batch_seconds.time():
                    alerts: list[AlertData] = []
                    for event, decoded, _ in decode_events(spec, events):
                        if decoded is None:
                            continue
                        if forward is not None:
                            await forward(event, decoded)
                        runner = runners.get(event.message.partition)
                        if runner is None:
                            runner = runners[event.message.partition] = factory()
                        alerts += runner.observe(decoded.data, event_time(event, decoded))
                    for alert in alerts:
                        metrics.alerts.labels(alert.kind, alert.severity).inc()
                        await ctx.send(ALERTS, *encode(
                            ALERTS, alert, source=SOURCE, event_id=alert.alert_id,
                            time=alert.last_seen))
                    metrics.burst_state_keys.labels(name).set(
                        sum(r.state_size() for r in runners.values()))
        run.__name__ = name
        return run

    async def forward_post(event: Any, decoded: Any) -> None:
        board = decoded.data.board or "-"
        await by_board.send(key=board.encode(), value=event.value)

    def watermarked(*detectors: Any) -> Callable[[], Watermarked]:
        def make() -> Watermarked:
            group = Watermarked([d(config) for d in detectors], config)
            groups.append(group)
            return group
        return make

    def report_detectors() -> Watermarked:
        group = Watermarked([ReportSurgeDetector(config, accuracy)], config)
        groups.append(group)
        return group

    ctx.app.agent(ctx.topic(REPORTS), name="vigil.burst.detect_report_surges")(
        make_runner("detect_report_surges", REPORTS, report_detectors))
    ctx.app.agent(ctx.topic(POSTS), name="vigil.burst.detect_thread_raids")(
        make_runner("detect_thread_raids", POSTS, watermarked(ThreadRaidDetector),
                    forward=forward_post))
    ctx.app.agent(by_board, name="vigil.burst.detect_board_bursts")(
        make_runner("detect_board_bursts", POSTS,
                    watermarked(NewAccountSwarmDetector, TextBrigadeDetector)))

    async def forward_signal(event: Any, decoded: Any) -> None:
        data = decoded.data
        if data.detector == "pdq" and isinstance(data.evidence.get("pdq"), str):
            await pdq_hashes.send(key=b"pdq", value=event.value)

    async def pass_signals(stream: Any) -> None:
        async for events in stream.take_events(settings.batch_size, settings.batch_within):
            for event, decoded, _ in decode_events(SIGNALS, events):
                if decoded is not None:
                    await forward_signal(event, decoded)

    ctx.app.agent(ctx.topic(SIGNALS), name="vigil.burst.collect_image_hashes")(pass_signals)
    ctx.app.agent(pdq_hashes, name="vigil.burst.detect_image_sprays")(
        make_runner("detect_image_sprays", SIGNALS, watermarked(ImageSprayDetector)))

    async def learn_reporter_accuracy(stream: Any) -> None:
        async for events in stream.take_events(settings.batch_size, settings.batch_within):
            for _, decoded, _ in decode_events(REVIEWS, events):
                # without `content_id` a review cannot be matched to the reports (skipped)
                if decoded is not None and decoded.data.content_id:
                    accuracy.reviewed(decoded.data.content_id, decoded.data.outcome)
            metrics.burst_state_keys.labels("learn_reporter_accuracy").set(accuracy.size())

    ctx.app.agent(ctx.topic(REVIEWS), name="vigil.burst.learn_reporter_accuracy")(
        learn_reporter_accuracy)

    if store is not None and store.path is not None:
        async def reload_policy() -> None:
            if await asyncio.to_thread(store.reload_if_changed):
                apply(store.policy)

        ctx.app.timer(float(getattr(settings, "policy_reload_seconds", 2.0)),
                      name="vigil.burst.reload_policy")(reload_policy)


__all__ = ["BY_BOARD", "NAME", "PDQ_HASHES", "event_time", "policy_store", "register"]

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
so pdq signals are forwarded to the single-partition internal topic `PDQ_HASHES`. Both are
created at start-up with the contract topics (`INTERNAL_TOPICS`), not auto-created by the broker
with its own partition count.

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
from collections.abc import Awaitable, Callable
from typing import Any

from agents.bursts import (
    BurstConfig,
    ImageSprayDetector,
    NewAccountSwarmDetector,
    ReporterAccuracy,
    ReportSurgeDetector,
    TextBrigadeDetector,
    TextSignatures,
    ThreadRaidDetector,
    Watermarked,
)
from agents.context import AgentContext, decode_events
from agents.policy import Policy, PolicyStore
from streams.codec import encode
from streams.events import AlertData, PostData, SignalData
from streams.topics import ALERTS, POSTS, REPORTS, REVIEWS, SIGNALS, TopicSpec

NAME = "burst"
SOURCE = "vigil/burst"
log = logging.getLogger(__name__)

#: Internal topics of this role (not contract). Posts re-keyed by board get the configured
#: partition count, like the posts topic they come from, so a role scaled out over workers
#: spreads its boards; pdq hashes all share one key (every image is compared with every other),
#: so one partition, which also gives the image watermark one total order.
BY_BOARD = TopicSpec(
    "vigil.burst.posts-by-board.v1", PostData, POSTS.types, key=lambda d: d.board or "-",
    doc="Internal to burst: forum.posts.v1 events, unchanged, keyed by board.",
)
PDQ_HASHES = TopicSpec(
    "vigil.burst.pdq.v1", SignalData, SIGNALS.types, key=lambda d: "pdq", partitions=1,
    doc="Internal to burst: pdq signals that carry a hash, all on one partition.",
)
INTERNAL_TOPICS: tuple[TopicSpec, ...] = (BY_BOARD, PDQ_HASHES)


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
    by_board = ctx.app.topic(BY_BOARD.full_name(prefix), key_type=bytes, value_type=bytes,
                             key_serializer="raw", value_serializer="raw")
    pdq_hashes = ctx.app.topic(PDQ_HASHES.full_name(prefix), key_type=bytes, value_type=bytes,
                               key_serializer="raw", value_serializer="raw", partitions=1)

    def make_runner(
        name: str, spec: TopicSpec, factory: Callable[[], Watermarked],
        forward: Callable[[Any, Any], Any] | None = None,
        prepare: Callable[[list[Any]], Awaitable[None]] | None = None,
    ) -> Callable[[Any], Any]:
        runners: dict[int, Watermarked] = {}
        batch_seconds = metrics.agent_batch_seconds.labels(NAME)

        async def run(stream: Any) -> None:
            async for events in stream.take_events(settings.batch_size, settings.batch_within):
                with batch_seconds.time():
                    alerts: list[AlertData] = []
                    batch = [(event, decoded) for event, decoded, _ in decode_events(spec, events)
                             if decoded is not None]
                    if prepare is not None:
                        await prepare([decoded.data for _, decoded in batch])
                    for event, decoded in batch:
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
        board = decoded.data.board or "-"  # BY_BOARD.key
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
    # MinHash signatures are the board detectors' CPU work (DESIGN §8: off the event loop): a
    # batch's are computed in a worker thread, then the detectors run on the loop as usual.
    # One per worker, so num_perm and the shingle size stay those of the start-up policy.
    text = config.thresholds.text_brigade
    signatures = TextSignatures(text.num_perm, text.shingle)

    async def sign_posts(posts: list[Any]) -> None:
        signatures.use(await asyncio.to_thread(signatures.sign, [p.body for p in posts]))

    def board_detectors() -> Watermarked:
        group = Watermarked([NewAccountSwarmDetector(config),
                             TextBrigadeDetector(config, signatures)], config)
        groups.append(group)
        return group

    ctx.app.agent(by_board, name="vigil.burst.detect_board_bursts")(
        make_runner("detect_board_bursts", POSTS, board_detectors, prepare=sign_posts))

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


__all__ = ["BY_BOARD", "INTERNAL_TOPICS", "NAME", "PDQ_HASHES", "event_time", "policy_store", "register"]

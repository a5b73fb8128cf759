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

State is in memory, per input partition, bounded by the windows (keys expire when idle), and
checkpointed: every `VIGIL_BURST_CHECKPOINT_SECONDS` each partition's detector group is written,
signed, with the last input offset it covers, to the internal compacted topic `CHECKPOINTS`
(`agents.bursts.checkpoint`). When a partition arrives (start-up, rebalance, or a gap in its
offsets) the latest checkpoint is restored and the input after its offset re-read
(`StateStore`), so detection goes on as if nothing had happened: same incidents, same alert ids.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

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
from agents.bursts.checkpoint import Snapshots
from agents.context import AgentContext, decode_events
from agents.policy import Policy, PolicyStore
from streams.codec import DecodeError, decode, encode
from streams.events import AlertData, Data, PostData, SignalData
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
#: Signed snapshots of detector state (`agents.bursts.checkpoint`), keyed `<agent>:<partition>`
#: (and `learn_reporter_accuracy`); compacted, since only each key's latest matters. One
#: partition: it is read whole when a partition's state is restored.
CHECKPOINTS = TopicSpec(
    "vigil.burst.checkpoints.v1", Data, (), key=lambda d: None, partitions=1,
    config={"cleanup.policy": "compact"},
    doc="Internal to burst: signed detector-state snapshots, latest per key.",
)
INTERNAL_TOPICS: tuple[TopicSpec, ...] = (BY_BOARD, PDQ_HASHES, CHECKPOINTS)
ACCURACY_KEY = "learn_reporter_accuracy"
_REUSE_READ_S = 10.0


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


def record_time(record: Any, decoded: Any) -> float:
    """`event_time` for a record read directly with aiokafka (timestamps in ms)."""
    if decoded.time is not None:
        return float(decoded.time.timestamp())
    return (record.timestamp or 0) / 1000.0


class StateStore:
    """A worker's burst checkpoints: written to `CHECKPOINTS` at most every `every_s` seconds
    per key (wall clock: when it is written does not change what is restored), read back
    whole when a partition's state is needed; and the input after a checkpoint re-read.

    Reads use their own consumer (no group), assigned and sought: the faust consumer is not
    moved. The embedded broker's end offsets can trail (DESIGN §1): a read that stops short of
    the newest checkpoint restores an older one and re-reads more input — slower, the same
    state. Input is re-read up to an offset known to exist (the first one faust delivered).
    """

    def __init__(self, ctx: AgentContext, snapshots: Snapshots, every_s: float) -> None:
        self.snapshots, self.every_s = snapshots, every_s
        self.bootstrap = str(getattr(ctx.settings, "bootstrap_servers", ""))
        self.name = CHECKPOINTS.full_name(ctx.settings.topic_prefix)
        self.topic = ctx.app.topic(self.name, key_type=bytes, value_type=bytes,
                                   key_serializer="raw", value_serializer="raw", partitions=1)
        self.saved: dict[str, float] = {}  # key → monotonic time of its last checkpoint
        # one read of the topic serves the partitions that arrive together (a start, a
        # rebalance); an older checkpoint than the newest only means re-reading more input
        self._reading = asyncio.Lock()
        self._read_at = float("-inf")
        self._latest: dict[bytes, bytes] = {}

    def due(self, key: str) -> bool:
        return time.monotonic() - self.saved.get(key, float("-inf")) >= self.every_s

    async def save(self, key: str, offset: int, state: object) -> None:
        """Checkpoint `state` as of input `offset`."""
        await self.topic.send(key=key.encode(), value=self.snapshots.dump(offset, state))
        self.saved[key] = time.monotonic()

    async def latest(self, key: str) -> tuple[int, Any] | None:
        """The newest checkpoint of `key` that this worker can load, as (offset, state)."""
        async with self._reading:
            if time.monotonic() - self._read_at > _REUSE_READ_S:
                self._latest = {r.key: r.value for r in await self._read(
                    TopicPartition(self.name, 0), 0, None) if r.key and r.value}
                self._read_at = time.monotonic()
        found = self._latest.get(key.encode())
        loaded = self.snapshots.load(found) if found is not None else None
        if loaded is not None:
            self.saved.setdefault(key, time.monotonic())
        return loaded

    async def records(self, topic: str, partition: int, start: int, stop: int) -> list[Any]:
        """The input records of `topic`/`partition` at offsets [start, stop)."""
        return await self._read(TopicPartition(topic, partition), start, stop)

    async def _read(self, tp: TopicPartition, start: int, stop: int | None) -> list[Any]:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None,
                                    enable_auto_commit=False, fetch_max_wait_ms=50)
        try:
            await consumer.start()
            consumer.assign([tp])
            if stop is None:
                stop = (await consumer.end_offsets([tp]))[tp]
            consumer.seek(tp, start)
            out: list[Any] = []
            while start < stop and await consumer.position(tp) < stop:  # gaps allowed
                batches = await consumer.getmany(tp, timeout_ms=500)
                out += [r for r in batches.get(tp, ()) if r.offset < stop]
            return out
        finally:
            await consumer.stop()


@dataclass
class _Partition:
    """One input partition's detector group and the last offset folded into it."""

    group: Watermarked
    offset: int


def register(ctx: AgentContext) -> None:
    """Register the burst agents on `ctx.app`."""
    settings: Any = ctx.settings
    metrics = ctx.metrics
    partitions: list[dict[int, _Partition]] = []  # per agent, to reconfigure on a reload
    accuracy = ReporterAccuracy()  # one per worker: reviews write it, report detectors read it

    store = policy_store(settings)
    config = BurstConfig.from_policy(store.policy) if store is not None else BurstConfig()
    # MinHash signatures are the board detectors' CPU work (DESIGN §8: off the event loop): a
    # batch's are computed in a worker thread, then the detectors run on the loop as usual.
    # One per worker; a reload that changes num_perm or the shingle size replaces it (`apply`).
    text = config.thresholds.text_brigade
    signatures = TextSignatures(text.num_perm, text.shingle)

    secret = ctx.checkpoint_key
    every_s = float(getattr(settings, "burst_checkpoint_seconds", 3600.0))
    state: StateStore | None = None
    if secret is not None and every_s > 0:
        snapshots = Snapshots(secret)
        for name, obj in (("config", config), ("accuracy", accuracy),
                          ("signatures", signatures)):
            snapshots.share(name, obj)
        state = StateStore(ctx, snapshots, every_s)
    else:
        log.warning("burst: no checkpoints (VIGIL_BURST_CHECKPOINT_KEY(_FILE) unset or "
                    "checkpoints off): a restart loses windows, baselines and open incidents")

    def text_detectors() -> list[TextBrigadeDetector]:
        return [d for runners in partitions for runner in runners.values()
                for d in runner.group.detectors if isinstance(d, TextBrigadeDetector)]

    async def apply(policy: Policy) -> None:
        """Every group (and groups made later) switch between two batches. New MinHash index
        parameters re-index the windows' posts: their signatures are computed first, in a
        thread; the switch itself does not await, so no batch sees half of it."""
        nonlocal config, signatures
        new = BurstConfig.from_policy(policy)
        text, old = new.thresholds.text_brigade, config.thresholds.text_brigade
        index = (text.similarity, text.num_perm, text.shingle)
        reindex = index != (old.similarity, old.num_perm, old.shingle)
        if reindex:
            fresh = TextSignatures(text.num_perm, text.shingle)
            bodies = [body for d in text_detectors() for body in d.bodies.values()]
            fresh.use(await asyncio.to_thread(fresh.sign, bodies))
        config = new
        if state is not None:
            state.snapshots.share("config", config)
        for runners in partitions:
            for runner in runners.values():
                runner.group.reconfigure(config)
        if reindex:
            signatures = fresh
            if state is not None:
                state.snapshots.share("signatures", signatures)
            for detector in text_detectors():  # posts that arrived meanwhile: signed here
                detector.reindex(signatures)
        log.warning("burst: thresholds of policy %s in force", policy.version)

    accuracy_restored = False

    async def restore_accuracy() -> None:
        """Once per worker, before the first partition is restored or review applied."""
        nonlocal accuracy_restored
        if accuracy_restored or state is None:
            return
        accuracy_restored = True
        loaded = await state.latest(ACCURACY_KEY)
        if loaded is not None and isinstance(loaded[1], ReporterAccuracy):
            accuracy.targets, accuracy.counts = loaded[1].targets, loaded[1].counts

    async def save_accuracy() -> None:
        if state is not None and state.due(ACCURACY_KEY):
            await state.save(ACCURACY_KEY, -1, accuracy)

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
        runners: dict[int, _Partition] = {}
        partitions.append(runners)
        batch_seconds = metrics.agent_batch_seconds.labels(NAME)

        async def send(alerts: list[AlertData]) -> None:
            for alert in alerts:
                metrics.alerts.labels(alert.kind, alert.severity).inc()
                await ctx.send(ALERTS, *encode(
                    ALERTS, alert, source=SOURCE, event_id=alert.alert_id,
                    time=alert.last_seen))

        async def arrive(topic: str, partition: int, first: int) -> None:
            """A batch starts at `first`: if the group does not end right before it (a new
            partition, or events handled elsewhere meanwhile), take the newest of it and the
            checkpoint and re-read the input between it and `first`."""
            current = runners.get(partition)
            if current is not None and first <= current.offset + 1:
                return
            await restore_accuracy()
            best = current
            loaded = await state.latest(f"{name}:{partition}") if state is not None else None
            if loaded is not None and isinstance(loaded[1], Watermarked) and (
                    best is None or loaded[0] > best.offset):
                loaded[1].reconfigure(config)
                best = _Partition(loaded[1], loaded[0])
            if best is None:
                runners[partition] = _Partition(factory(), first - 1)
                return
            runners[partition] = best
            log.warning("burst: %s partition %d restored at offset %d, input from offset %d",
                        name, partition, best.offset, first)
            if state is None or best.offset + 1 >= first:
                return
            records = await state.records(topic, partition, best.offset + 1, first)
            replay = []
            for record in records:
                try:
                    replay.append((record, decode(spec, record.value)))
                except DecodeError:
                    continue
            if prepare is not None:
                await prepare([decoded.data for _, decoded in replay])
            alerts = [a for record, decoded in replay
                      for a in best.group.observe(decoded.data, record_time(record, decoded))]
            best.offset = first - 1
            log.warning("burst: %s partition %d: %d events re-read up to offset %d",
                        name, partition, len(records), best.offset)
            await send(alerts)

        async def run(stream: Any) -> None:
            async for events in stream.take_events(settings.batch_size, settings.batch_within):
                with batch_seconds.time():
                    firsts: dict[int, Any] = {}
                    for event in events:
                        firsts.setdefault(event.message.partition, event.message)
                    for partition, message in firsts.items():
                        await arrive(message.topic, partition, message.offset)
                    batch = [(event, decoded) for event, decoded, _ in decode_events(spec, events)]
                    if forward is not None:  # every post, re-read or not: at-least-once
                        for event, decoded in batch:
                            if decoded is not None:
                                await forward(event, decoded)
                    fresh = [(event, decoded) for event, decoded in batch
                             if event.message.offset > runners[event.message.partition].offset]
                    if prepare is not None:
                        await prepare([d.data for _, d in fresh if d is not None])
                    alerts: list[AlertData] = []
                    for event, decoded in fresh:
                        runner = runners[event.message.partition]
                        runner.offset = event.message.offset
                        if decoded is not None:
                            alerts += runner.group.observe(decoded.data,
                                                           event_time(event, decoded))
                    await send(alerts)
                    metrics.burst_state_keys.labels(name).set(
                        sum(r.group.state_size() for r in runners.values()))
                    if state is not None:
                        for partition in firsts:
                            runner, key = runners[partition], f"{name}:{partition}"
                            if state.due(key):
                                await state.save(key, runner.offset, runner.group)
                        if name == "detect_report_surges":  # reports write to accuracy
                            await save_accuracy()
        run.__name__ = name
        return run

    async def forward_post(event: Any, decoded: Any) -> None:
        board = decoded.data.board or "-"  # BY_BOARD.key
        await by_board.send(key=board.encode(), value=event.value)

    def watermarked(*detectors: Any) -> Callable[[], Watermarked]:
        def make() -> Watermarked:
            return Watermarked([d(config) for d in detectors], config)
        return make

    def report_detectors() -> Watermarked:
        return Watermarked([ReportSurgeDetector(config, accuracy)], config)

    ctx.app.agent(ctx.topic(REPORTS), name="vigil.burst.detect_report_surges")(
        make_runner("detect_report_surges", REPORTS, report_detectors))
    ctx.app.agent(ctx.topic(POSTS), name="vigil.burst.detect_thread_raids")(
        make_runner("detect_thread_raids", POSTS, watermarked(ThreadRaidDetector),
                    forward=forward_post))

    async def sign_posts(posts: list[Any]) -> None:
        signatures.use(await asyncio.to_thread(signatures.sign, [p.body for p in posts]))

    def board_detectors() -> Watermarked:
        return Watermarked([NewAccountSwarmDetector(config),
                            TextBrigadeDetector(config, signatures)], config)

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
            await restore_accuracy()
            for _, decoded, _ in decode_events(REVIEWS, events):
                # without `content_id` a review cannot be matched to the reports (skipped)
                if decoded is not None and decoded.data.content_id:
                    accuracy.reviewed(decoded.data.content_id, decoded.data.outcome)
            metrics.burst_state_keys.labels(ACCURACY_KEY).set(accuracy.size())
            await save_accuracy()

    ctx.app.agent(ctx.topic(REVIEWS), name="vigil.burst.learn_reporter_accuracy")(
        learn_reporter_accuracy)

    if store is not None and store.path is not None:
        async def reload_policy() -> None:
            if await asyncio.to_thread(store.reload_if_changed):
                await apply(store.policy)

        ctx.app.timer(float(getattr(settings, "policy_reload_seconds", 2.0)),
                      name="vigil.burst.reload_policy")(reload_policy)


__all__ = ["BY_BOARD", "CHECKPOINTS", "INTERNAL_TOPICS", "NAME", "PDQ_HASHES", "StateStore",
           "event_time", "policy_store", "register"]

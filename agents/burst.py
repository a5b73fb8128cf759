"""Burst agent (role `burst`): report surges, thread raids, new-account swarms, text brigades
and image sprays, as alerts on `safety.alerts.v1`.

Thin by design: one plain consume loop (`agents/consumer.py`, group `<app id>.burst`) reads
every input of the role; each batch's records go, per topic, to that topic's agent, which hands
every valid event with its event time (the CloudEvent `time`, else the Kafka record timestamp —
never the wall clock) to the pure detectors of `agents.bursts` for that input partition. The
alerts they return, with the alert id as the event id (same input → same ids; consumers dedup
by `id`), and the records forwarded to the internal topics go into the batch's `Outbox`, which
is delivered before the loop marks the batch's offsets committable (at-least-once). Unreadable
events are skipped here: intake dead-letters them. Why a plain loop and not faust agents:
burst reads every post (twice) and every signal, and faust's per-event stream machinery was
the largest avoidable share of the worker's event loop (docs/architecture.md).

Partitioning (docs/burst.md): reports are keyed by target and posts by thread, so
`report_surge` and `thread_raid` are partition-local. `new_account_swarm` and `text_brigade`
need a board's posts in one place: `detect_thread_raids` forwards each post, unchanged, to the
internal topic `BY_BOARD` keyed by board. `image_spray` compares every image with every other,
so pdq signals are forwarded to the single-partition internal topic `PDQ_HASHES` (only records
that can be pdq signals are decoded: `maybe_pdq`). Both are created at start-up with the
contract topics (`INTERNAL_TOPICS`), not auto-created by the broker with its own partition
count.

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
A partition revoked in a rebalance keeps its group until the assignment that follows: when it
comes back, the gap test above decides whether the group is still exact; when it went to
another worker, its group is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection
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
from agents.consumer import Batch, Record
from agents.context import AgentContext, Outbox
from agents.metrics import Metrics
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
PDQ = "pdq"  # the hashing role's detector name for PDQ signals
_REUSE_READ_S = 10.0
#: `vigil_burst_state_keys` is a gauge scraped every few seconds; counting it walks every
#: key of every detector (≈ 4 % of the event loop when done per batch), so on a timer this often.
_STATE_GAUGE_S = 5.0


def policy_store(settings: Any) -> PolicyStore | None:
    """The policy file's store, or None when it cannot be read at start-up: burst detection
    then runs on the default thresholds (a broken policy must not stop it; decide, which acts
    on content, refuses to start instead)."""
    try:
        return PolicyStore(getattr(settings, "policy", None))
    except Exception as exc:  # noqa: BLE001 - PolicyError or OSError, logged and survived
        log.error("burst: policy not readable, default thresholds in force: %s", exc)
        return None


def record_time(record: Any, decoded: Any) -> float:
    """Event time in epoch seconds: CloudEvent `time`, else the Kafka record timestamp (ms)."""
    if decoded.time is not None:
        return float(decoded.time.timestamp())
    return (record.timestamp or 0) / 1000.0


def maybe_pdq(value: bytes | None) -> bool:
    """Whether a raw `safety.signals.v1` value can be a pdq signal, without decoding it.

    A pdq signal's JSON holds the string `"pdq"` (its `detector`), and JSON can spell the
    letters of a string only literally or as `\\uXXXX` escapes; the decoder reads UTF-8
    only. So a value with neither `pdq` nor `\\u` in its bytes cannot decode to a pdq
    signal (tests/unit/test_burst_forwarding.py), and most signals (intake, text, sha256,
    md5) are dropped here instead of decoded.
    """
    return value is not None and (b"pdq" in value or b"\\u" in value)


def carries_pdq_hash(value: bytes | None) -> bool:
    """Whether a raw `safety.signals.v1` value is a pdq signal with a hash (image sprays
    compare those); decoded only when `maybe_pdq`."""
    if not maybe_pdq(value):
        return False
    try:
        data = decode(SIGNALS, value).data
    except DecodeError:
        return False
    return bool(data.detector == PDQ and isinstance(data.evidence.get(PDQ), str))


def add_alerts(out: Outbox, alerts: list[AlertData], metrics: Metrics) -> None:
    """Put `alerts` in the batch's outbox, each with its alert id as event id."""
    for alert in alerts:
        metrics.alerts.labels(alert.kind, alert.severity).inc()
        out.add(ALERTS, *encode(ALERTS, alert, source=SOURCE, event_id=alert.alert_id,
                                time=alert.last_seen))


class StateStore:
    """A worker's burst checkpoints: written to `CHECKPOINTS` at most every `every_s` seconds
    per key (wall clock: when it is written does not change what is restored), read back
    whole when a partition's state is needed; and the input after a checkpoint re-read.

    Reads use their own consumer (no group), assigned and sought: the consume loop's is not
    moved. The embedded broker's end offsets can trail (DESIGN §1): a read that stops short of
    the newest checkpoint restores an older one and re-reads more input — slower, the same
    state. Input is re-read up to an offset known to exist (the first one the loop delivered).
    """

    def __init__(self, ctx: AgentContext, snapshots: Snapshots, every_s: float) -> None:
        self.ctx, self.snapshots, self.every_s = ctx, snapshots, every_s
        self.bootstrap = str(getattr(ctx.settings, "bootstrap_servers", ""))
        self.name = ctx.topic_name(CHECKPOINTS)
        self.saved: dict[str, float] = {}  # key → monotonic time of its last checkpoint
        # one read of the topic serves the partitions that arrive together (a start, a
        # rebalance); an older checkpoint than the newest only means re-reading more input
        self._reading = asyncio.Lock()
        self._read_at = float("-inf")
        self._latest: dict[bytes, bytes] = {}

    def due(self, key: str) -> bool:
        return time.monotonic() - self.saved.get(key, float("-inf")) >= self.every_s

    async def save(self, key: str, offset: int, state: object) -> None:
        """Checkpoint `state` as of input `offset` (queued, not awaited: a checkpoint that is
        lost only means that a restore re-reads more input)."""
        await self.ctx.send(CHECKPOINTS, key.encode(), self.snapshots.dump(offset, state))
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


@dataclass
class _Shared:
    """What the detector agents of a worker share: the thresholds in force (replaced on a
    policy reload), the reporter accuracy (reviews write it, report detectors read it), the
    checkpoints."""

    metrics: Metrics
    state: StateStore | None
    config: BurstConfig
    accuracy: ReporterAccuracy
    accuracy_restored: bool = False

    async def restore_accuracy(self) -> None:
        """Once per worker, before the first partition is restored or review applied."""
        if self.accuracy_restored or self.state is None:
            return
        self.accuracy_restored = True
        loaded = await self.state.latest(ACCURACY_KEY)
        if loaded is not None and isinstance(loaded[1], ReporterAccuracy):
            self.accuracy.targets, self.accuracy.counts = loaded[1].targets, loaded[1].counts

    async def save_accuracy(self) -> None:
        if self.state is not None and self.state.due(ACCURACY_KEY):
            await self.state.save(ACCURACY_KEY, -1, self.accuracy)


Prepare = Callable[[list[Any]], Awaitable[None]]
"""CPU work for a batch's events before the detectors see them, off the event loop."""
Forward = Callable[[Outbox, Record, Any], None]
"""Puts a record (decoded) somewhere else too: into the batch's outbox."""


class _Detect:
    """One detector agent over one input topic: a detector group per partition, checkpointed
    under `<name>:<partition>` and restored when the partition arrives (`arrive`)."""

    def __init__(self, name: str, spec: TopicSpec, factory: Callable[[], Watermarked],
                 shared: _Shared, *, prepare: Prepare | None = None,
                 forward: Forward | None = None) -> None:
        self.name, self.spec, self.factory, self.shared = name, spec, factory, shared
        self.prepare, self.forward = prepare, forward
        self.partitions: dict[int, _Partition] = {}

    async def handle(self, records: list[Record], out: Outbox) -> dict[int, _Partition]:
        """Fold one batch's records of this topic into their partitions' groups; the alerts
        (and forwarded records) go to `out`. Returns the groups it fed: a rebalance during
        an await may drop them from `partitions`, this batch still finishes with them."""
        groups: dict[int, _Partition] = {}
        for record in records:
            if record.partition not in groups:
                groups[record.partition] = await self.arrive(record, out)
        batch: list[tuple[Record, Any]] = []
        for record in records:
            try:
                batch.append((record, decode(self.spec, record.value)))
            except DecodeError:
                batch.append((record, None))
        if self.forward is not None:  # every record, re-read or not: at-least-once
            for record, decoded in batch:
                if decoded is not None:
                    self.forward(out, record, decoded)
        fresh = [(r, d) for r, d in batch if r.offset > groups[r.partition].offset]
        if self.prepare is not None:
            await self.prepare([d.data for _, d in fresh if d is not None])
        alerts: list[AlertData] = []
        for record, decoded in fresh:
            part = groups[record.partition]
            part.offset = record.offset
            if decoded is not None:
                alerts += part.group.observe(decoded.data, record_time(record, decoded))
        add_alerts(out, alerts, self.shared.metrics)
        return groups

    async def arrive(self, record: Record, out: Outbox) -> _Partition:
        """The group for a batch whose first record of this partition is `record`: if the
        group does not end right before it (a new partition, or events handled elsewhere
        meanwhile), the newest of it and the checkpoint, with the input between it and
        `record` re-read (the alerts that causes go to `out`)."""
        partition, first = record.partition, record.offset
        current = self.partitions.get(partition)
        if current is not None and first <= current.offset + 1:
            return current
        shared, state = self.shared, self.shared.state
        await shared.restore_accuracy()
        best = current
        loaded = await state.latest(f"{self.name}:{partition}") if state is not None else None
        if loaded is not None and isinstance(loaded[1], Watermarked) and (
                best is None or loaded[0] > best.offset):
            loaded[1].reconfigure(shared.config)
            best = _Partition(loaded[1], loaded[0])
        if best is None:
            best = self.partitions[partition] = _Partition(self.factory(), first - 1)
            return best
        self.partitions[partition] = best
        log.warning("burst: %s partition %d restored at offset %d, input from offset %d",
                    self.name, partition, best.offset, first)
        if state is None or best.offset + 1 >= first:
            return best
        records = await state.records(record.topic, partition, best.offset + 1, first)
        replay = []
        for old in records:
            try:
                replay.append((old, decode(self.spec, old.value)))
            except DecodeError:
                continue
        if self.prepare is not None:
            await self.prepare([decoded.data for _, decoded in replay])
        add_alerts(out, [alert for old, decoded in replay for alert in
                         best.group.observe(decoded.data, record_time(old, decoded))],
                   shared.metrics)
        best.offset = first - 1
        log.warning("burst: %s partition %d: %d events re-read up to offset %d",
                    self.name, partition, len(records), best.offset)
        return best

    async def checkpoint(self, groups: dict[int, _Partition]) -> None:
        """Checkpoint those of a batch's groups that are due — after the batch's outbox was
        delivered, so a checkpoint never covers an alert that is not on the broker. A group
        dropped meanwhile (its partition went to another worker) is not written: its new
        owner's checkpoints are the newer ones."""
        state = self.shared.state
        if state is None:
            return
        for partition, part in groups.items():
            key = f"{self.name}:{partition}"
            if self.partitions.get(partition) is part and state.due(key):
                await state.save(key, part.offset, part.group)

    def keep_only(self, partitions: Collection[int]) -> None:
        """After a rebalance: drop the groups of partitions this worker no longer has."""
        for partition in [p for p in self.partitions if p not in partitions]:
            del self.partitions[partition]

    def state_size(self) -> int:
        return sum(part.group.state_size() for part in self.partitions.values())


def register(ctx: AgentContext) -> None:
    """Register burst's consume loop (every input of the role) and its policy reload."""
    settings: Any = ctx.settings
    metrics = ctx.metrics
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
    shared = _Shared(metrics, state, config, accuracy)

    def watermarked(*detectors: Any) -> Callable[[], Watermarked]:
        def make() -> Watermarked:
            return Watermarked([d(shared.config) for d in detectors], shared.config)
        return make

    def report_detectors() -> Watermarked:
        return Watermarked([ReportSurgeDetector(shared.config, accuracy)], shared.config)

    def board_detectors() -> Watermarked:
        return Watermarked([NewAccountSwarmDetector(shared.config),
                            TextBrigadeDetector(shared.config, signatures)], shared.config)

    async def sign_posts(posts: list[Any]) -> None:
        signatures.use(await asyncio.to_thread(signatures.sign, [p.body for p in posts]))

    def forward_post(out: Outbox, record: Record, decoded: Any) -> None:
        out.add(BY_BOARD, (decoded.data.board or "-").encode(), record.value)  # BY_BOARD.key

    detections = {ctx.topic_name(d.spec): d for d in (
        _Detect("detect_report_surges", REPORTS, report_detectors, shared),
        _Detect("detect_thread_raids", POSTS, watermarked(ThreadRaidDetector), shared,
                forward=forward_post),
        _Detect("detect_board_bursts", BY_BOARD, board_detectors, shared, prepare=sign_posts),
        _Detect("detect_image_sprays", PDQ_HASHES, watermarked(ImageSprayDetector), shared),
    )}
    signals_topic, reviews_topic = ctx.topic_name(SIGNALS), ctx.topic_name(REVIEWS)
    reports_topic = ctx.topic_name(REPORTS)

    def collect_image_hashes(out: Outbox, records: list[Record]) -> None:
        for record in records:
            if carries_pdq_hash(record.value):
                out.add(PDQ_HASHES, PDQ.encode(), record.value)  # PDQ_HASHES.key

    async def learn_reporter_accuracy(records: list[Record]) -> None:
        await shared.restore_accuracy()
        for record in records:
            try:
                review = decode(REVIEWS, record.value).data
            except DecodeError:
                continue
            # without `content_id` a review cannot be matched to the reports (skipped)
            if review.content_id:
                accuracy.reviewed(review.content_id, review.outcome)

    batch_seconds = metrics.agent_batch_seconds.labels(NAME)

    async def detect_bursts(batch: Batch) -> None:
        with batch_seconds.time():
            by_topic: dict[str, list[Record]] = {}
            for record in batch.records:
                by_topic.setdefault(record.topic, []).append(record)
            fed: list[tuple[_Detect, dict[int, _Partition]]] = []
            async with ctx.outbox() as out:  # delivered before the batch may be committed
                for topic, records in by_topic.items():
                    detection = detections.get(topic)
                    if detection is not None:
                        fed.append((detection, await detection.handle(records, out)))
                    elif topic == signals_topic:
                        collect_image_hashes(out, records)
                    elif topic == reviews_topic:
                        await learn_reporter_accuracy(records)
            for detection, groups in fed:
                await detection.checkpoint(groups)
            if reports_topic in by_topic or reviews_topic in by_topic:  # accuracy changed
                await shared.save_accuracy()

    def on_assigned(assigned: set[TopicPartition]) -> None:
        """A revoked partition keeps its group until the assignment that follows the revoke
        (eager rebalancing revokes every partition, most come straight back: `arrive` then
        finds the group exact and nothing is re-read); one that went elsewhere is dropped."""
        for topic, detection in detections.items():
            detection.keep_only({tp.partition for tp in assigned if tp.topic == topic})

    # Nobody holds a post for burst's alerts: in a process shared with the verdict path it
    # polls after that path has caught up (`agents.consumer.Backlog`), 100 records at a time.
    ctx.consume(NAME, (REPORTS, POSTS, BY_BOARD, SIGNALS, PDQ_HASHES, REVIEWS), detect_bursts,
                on_assigned=on_assigned, background=True)

    async def count_state() -> None:
        """`vigil_burst_state_keys`, on a timer rather than per batch: see `_STATE_GAUGE_S`."""
        for detection in detections.values():
            metrics.burst_state_keys.labels(detection.name).set(detection.state_size())
        metrics.burst_state_keys.labels(ACCURACY_KEY).set(accuracy.size())

    ctx.app.timer(_STATE_GAUGE_S, name="vigil.burst.count_state")(count_state)

    def text_detectors() -> list[TextBrigadeDetector]:
        return [d for detection in detections.values() for part in detection.partitions.values()
                for d in part.group.detectors if isinstance(d, TextBrigadeDetector)]

    async def apply(policy: Policy) -> None:
        """Every group (and groups made later) switch between two batches. New MinHash index
        parameters re-index the windows' posts: their signatures are computed first, in a
        thread; the switch itself does not await, so no batch sees half of it."""
        nonlocal signatures
        new = BurstConfig.from_policy(policy)
        text, old = new.thresholds.text_brigade, shared.config.thresholds.text_brigade
        index = (text.similarity, text.num_perm, text.shingle)
        reindex = index != (old.similarity, old.num_perm, old.shingle)
        if reindex:
            fresh = TextSignatures(text.num_perm, text.shingle)
            bodies = [body for d in text_detectors() for body in d.bodies.values()]
            fresh.use(await asyncio.to_thread(fresh.sign, bodies))
        shared.config = new
        if state is not None:
            state.snapshots.share("config", new)
        for detection in detections.values():
            for part in detection.partitions.values():
                part.group.reconfigure(new)
        if reindex:
            signatures = fresh
            if state is not None:
                state.snapshots.share("signatures", signatures)
            for detector in text_detectors():  # posts that arrived meanwhile: signed here
                detector.reindex(signatures)
        log.warning("burst: thresholds of policy %s in force", policy.version)

    if store is not None and store.path is not None:
        async def reload_policy() -> None:
            if await asyncio.to_thread(store.reload_if_changed):
                await apply(store.policy)

        ctx.app.timer(float(getattr(settings, "policy_reload_seconds", 2.0)),
                      name="vigil.burst.reload_policy")(reload_policy)


__all__ = ["BY_BOARD", "CHECKPOINTS", "INTERNAL_TOPICS", "NAME", "PDQ_HASHES", "StateStore",
           "carries_pdq_hash", "maybe_pdq", "policy_store", "record_time", "register"]

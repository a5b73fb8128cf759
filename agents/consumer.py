"""A plain aiokafka consume loop for the hot agents (intake, decide), hosted by the faust app.

Why not a faust agent: on this hardware faust's per-event stream, ack and commit machinery costs
≈ 75 µs of the ≈ 110 µs decide spends per decision (py-spy, docs/performance.md), and a faust
pass-through tops out near 3.6k events/s where an aiokafka consume → decode → produce loop
reaches ≈ 50k/s (DESIGN §1). The hot agents keep their pure code and their `Outbox`; only the
transport changes. The faust app still hosts the loop (as a task: one worker, one lifecycle,
one metrics registry), and the other agents stay faust agents.

Guarantees, the same as faust's at-least-once:

- A record's offset becomes committable only after the outputs of the batch that read it are
  delivered (`Outbox.flush` returned) — and, for a record the handler *holds* (decide's inputs
  of a content still waiting for signals), only once it is released. The committed offset of a
  partition is the lowest offset still held there, else one past the last delivered record, so
  a crash redelivers everything not yet acted on, and decisions are idempotent (ids derived
  from content) so a redelivery never doubles an action.
- Offsets are committed at most every `commit_every` seconds, and on a rebalance before the
  partitions go (the listener commits what is committable, then tells the handler which
  partitions it lost so it can drop their state: the new owner rereads the held records).

Verdicts first: every role of `vigil run` shares one event loop, and asyncio has no priorities.
A loop on the verdict path (intake, classify's posts, decide: `Backlog.report`) says after each
poll whether input is still waiting for it; a background loop (burst's detectors, whose alerts
nobody holds a post for) waits before each poll until none is behind, at most `MAX_DEFER_S`,
and polls at most `BACKGROUND_RECORDS` at a time, so its synchronous stretches stay short. A
burst of input is answered first and detected right after. Under sustained overload (a wait
ran out) the background loop then polls freely for as long again: it is slowed, never starved
(a raid is itself a burst of posts). In a process without verdict-path loops (`vigil worker
--agents burst`) nothing ever waits.

Each loop has its own consumer group, `<faust app id>.<loop name>`: workers running the same
roles share partitions, as faust's agents do. Consumer lag is published on faust's own gauges
(`faust_topic_partition_end_offset`, `faust_topic_partition_offset_commited`), so the
`consumer_lag_growing` alert and the dashboards see these loops like any faust agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError


log = logging.getLogger(__name__)

Record = ConsumerRecord  # what a handler receives: .topic .partition .offset .key .value .timestamp
#: A held record — (partition, offset, the partition's assignment epoch) — released later by
#: `Offsets.release`. The epoch makes a hold taken before a revoke stale: releasing it after
#: the partition came back cannot release a new hold on the same offset.
Hold = tuple[TopicPartition, int, int]


class LoopSettings(Protocol):
    """The settings a consume loop reads (the composition's `Settings` satisfies it)."""

    @property
    def bootstrap_servers(self) -> str: ...
    @property
    def batch_size(self) -> int: ...
    @property
    def batch_within(self) -> float: ...
    @property
    def consumer_max_fetch_size(self) -> int: ...
    @property
    def consumer_fetch_max_wait_ms(self) -> int: ...
    @property
    def broker_session_timeout(self) -> float: ...
    @property
    def broker_rebalance_timeout(self) -> float: ...
    @property
    def broker_heartbeat_interval(self) -> float: ...


class Offsets:
    """What may be committed, per partition: one past the last delivered record, or the lowest
    offset a handler still holds there (pure bookkeeping, no I/O)."""

    def __init__(self) -> None:
        self._next: dict[TopicPartition, int] = {}
        self._held: dict[TopicPartition, dict[int, int]] = {}
        self._epoch: dict[TopicPartition, int] = {}

    def delivered(self, tp: TopicPartition, offset: int) -> None:
        """Everything up to `offset` on `tp` has its outputs delivered (or is held)."""
        if offset + 1 > self._next.get(tp, -1):
            self._next[tp] = offset + 1

    def hold(self, tp: TopicPartition, offset: int) -> Hold:
        """Keep `offset` (and everything after it) uncommitted until `release`."""
        held = self._held.setdefault(tp, {})
        held[offset] = held.get(offset, 0) + 1
        return tp, offset, self._epoch.get(tp, 0)

    def release(self, hold: Hold) -> None:
        """Undo one `hold` (stale holds — of a partition revoked since — are ignored)."""
        tp, offset, epoch = hold
        held = self._held.get(tp)
        if held is None or offset not in held or epoch != self._epoch.get(tp, 0):
            return
        if held[offset] <= 1:
            del held[offset]
        else:
            held[offset] -= 1

    def held(self, tp: TopicPartition) -> int:
        """How many holds `tp` has."""
        return sum(self._held.get(tp, {}).values())

    def committable(self) -> dict[TopicPartition, int]:
        """The offset to commit per partition (what a restart would read first)."""
        out: dict[TopicPartition, int] = {}
        for tp, nxt in self._next.items():
            held = self._held.get(tp)
            out[tp] = min(min(held), nxt) if held else nxt
        return out

    def partitions(self) -> list[TopicPartition]:
        """Partitions with bookkeeping."""
        return list(self._next.keys() | self._held.keys())

    def forget(self, partitions: Collection[TopicPartition]) -> None:
        """Drop the partitions' bookkeeping (revoked: their new owner starts from the commit)."""
        for tp in partitions:
            self._next.pop(tp, None)
            self._held.pop(tp, None)
            self._epoch[tp] = self._epoch.get(tp, 0) + 1


@dataclass
class Batch:
    """One poll's records, and the holds the handler takes on some of them."""

    records: list[Record]
    offsets: Offsets
    held: list[Hold] = field(default_factory=list)

    def hold(self, record: Record) -> Hold:
        """Keep `record` uncommitted after this batch; the handler must `release` it later."""
        token = self.offsets.hold(TopicPartition(record.topic, record.partition), record.offset)
        self.held.append(token)
        return token


#: The longest a background loop waits for the verdict path before it polls anyway: decide's
#: default deadline (`VIGIL_DECIDE_DEADLINE_MS`), so a backlog that drains within the time a
#: post may wait for its verdict (a burst of input) is answered before burst reads it.
MAX_DEFER_S = 5.0
#: A background loop's poll size, which bounds how long the verdict path waits behind it: on
#: these cores ≈ 7 ms of burst's detectors per 100 of the load bench's posts (median, decoding
#: included; MinHash signatures are computed in a thread), 5× that for a `VIGIL_BATCH_SIZE` poll.
BACKGROUND_RECORDS = 100


class Backlog:
    """Which verdict-path loops of this process have input waiting (see the module doc)."""

    def __init__(self, max_defer: float = MAX_DEFER_S) -> None:
        self.max_defer = max_defer
        self._behind: set[str] = set()
        self._clear = asyncio.Event()
        self._clear.set()

    def report(self, name: str, behind: bool) -> None:
        """Loop `name` has (or no longer has) input waiting after its last poll."""
        if behind:
            self._behind.add(name)
            self._clear.clear()
        else:
            self._behind.discard(name)
            if not self._behind:
                self._clear.set()

    @property
    def behind(self) -> frozenset[str]:
        return frozenset(self._behind)

    async def wait(self) -> float:
        """Wait until no verdict-path loop is behind, at most `max_defer`; the seconds waited."""
        if not self._behind:
            return 0.0
        start = time.monotonic()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._clear.wait(), self.max_defer)
        return time.monotonic() - start


def behind(polled: dict[TopicPartition, list[Record]], consumer: Any, max_records: int) -> bool:
    """Whether a poll left input waiting: it was full, or a partition's high watermark (from
    the fetch that brought its records) is past the last record handed out."""
    if sum(len(rs) for rs in polled.values()) >= max_records:
        return True
    for tp, rs in polled.items():
        end = consumer.highwater(tp)
        if rs and end is not None and end > rs[-1].offset + 1:
            return True
    return False


Handler = Callable[[Batch], Awaitable[None]]
"""Processes one batch and returns once its outputs are delivered (it flushes its Outbox)."""


class ConsumeLoop:
    """Consumes `specs` in group `group`, hands each poll to `handle`, commits what is safe.

    `on_revoked(partitions)` is called (after the commit) when a rebalance takes partitions
    away: the handler drops their state; it must not release holds of those partitions later
    (releases of unknown holds are ignored anyway). `on_assigned(partitions)` is called with
    the new assignment when a rebalance ends (a handler that keeps state across a revoke
    drops what did not come back). With `reports_to` the loop is on the verdict path and
    reports its backlog there; with `yields_to` it is a background loop that waits for it.
    """

    def __init__(self, *, name: str, group: str, topics: Sequence[str], settings: LoopSettings,
                 handle: Handler, metrics: Any,
                 on_revoked: Callable[[set[TopicPartition]], None] | None = None,
                 on_assigned: Callable[[set[TopicPartition]], None] | None = None,
                 commit_every: float = 1.0, reports_to: Backlog | None = None,
                 yields_to: Backlog | None = None, deferred: Any = None) -> None:
        self.name, self.group, self.topics = name, group, list(topics)
        self.settings = settings
        self.handle = handle
        self.on_revoked, self.on_assigned = on_revoked, on_assigned
        self.commit_every = commit_every
        self.reports_to, self.yields_to = reports_to, yields_to
        self.max_records = (min(settings.batch_size, BACKGROUND_RECORDS) if yields_to is not None
                            else settings.batch_size)
        self.deferred_s = 0.0  # total seconds this (background) loop waited for the verdict path
        self._deferred = deferred  # its counter (`vigil_deferred_seconds_total{loop}`), if any
        self._free_until = 0.0  # after a wait ran out: poll without waiting until then
        self.offsets = Offsets()
        self._faust = metrics  # faust's sensor metrics (FaustMetrics)
        self._consumer: AIOKafkaConsumer | None = None
        self._committed: dict[TopicPartition, int] = {}
        self._last_commit = 0.0
        self._received: dict[str, Any] = {}
        self._gauges: dict[tuple[str, TopicPartition], Any] = {}
        self.assigned = asyncio.Event()

    # -- lifecycle ----------------------------------------------------------------------

    async def run(self) -> None:
        """Consume until cancelled; a broker error starts a new consumer (the group then
        redelivers from the last commit: at-least-once)."""
        while True:
            consumer = self._new_consumer()
            try:
                await consumer.start()
                self._consumer = consumer
                consumer.subscribe(self.topics, listener=_Listener(self))
                await self._consume(consumer)
            except asyncio.CancelledError:
                await _quietly(self._commit(consumer, force=True))
                raise
            except Exception:  # noqa: BLE001 - a broker hiccup must not end the role
                log.exception("%s: consume loop failed; starting again in 2 s", self.name)
                await asyncio.sleep(2)
            finally:
                self._consumer = None
                if self.reports_to is not None:
                    self.reports_to.report(self.name, False)
                await _quietly(consumer.stop())
                # Whatever this consumer held is redelivered to whoever gets it next.
                await self._revoked(set(self.offsets.partitions()))

    def _new_consumer(self) -> AIOKafkaConsumer:
        s = self.settings
        return AIOKafkaConsumer(
            bootstrap_servers=s.bootstrap_servers, group_id=self.group,
            enable_auto_commit=False, auto_offset_reset="earliest",
            max_partition_fetch_bytes=s.consumer_max_fetch_size,
            fetch_max_bytes=max(s.consumer_max_fetch_size, 52_428_800),
            fetch_max_wait_ms=s.consumer_fetch_max_wait_ms,
            max_poll_records=s.batch_size,
            session_timeout_ms=int(s.broker_session_timeout * 1000),
            rebalance_timeout_ms=int(s.broker_rebalance_timeout * 1000),
            heartbeat_interval_ms=int(s.broker_heartbeat_interval * 1000),
        )

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        within_ms = max(1, int(self.settings.batch_within * 1000))
        while True:
            if self.yields_to is not None and time.monotonic() >= self._free_until:
                waited = await self.yields_to.wait()
                self.deferred_s += waited
                if waited and self._deferred is not None:
                    self._deferred.inc(waited)
                if waited >= self.yields_to.max_defer:  # overload: take turns with the path
                    self._free_until = time.monotonic() + self.yields_to.max_defer
            polled = await consumer.getmany(timeout_ms=within_ms, max_records=self.max_records)
            records = [r for rs in polled.values() for r in rs]
            if self.reports_to is not None:
                self.reports_to.report(self.name, behind(polled, consumer, self.max_records))
            if records:
                self._count(polled, consumer)
                await self.handle(Batch(records, self.offsets))
                assignment = consumer.assignment()
                for tp, rs in polled.items():
                    if tp in assignment:  # revoked meanwhile: its new owner rereads it
                        self.offsets.delivered(tp, rs[-1].offset)
            await self._commit(consumer)

    def owns(self, key: str) -> bool:
        """Whether this member is assigned the partition of the loop's first topic that `key`
        maps to (crc32 modulo its partition count): picks one member of the group for work
        that belongs to no record (decide's mitigation announcements). False while this
        member has no assignment (starting, or in a rebalance)."""
        consumer = self._consumer
        if consumer is None:
            return False
        topic = self.topics[0]
        partitions = sorted(consumer.partitions_for_topic(topic) or ())
        if not partitions:
            return False
        partition = partitions[zlib.crc32(key.encode()) % len(partitions)]
        return TopicPartition(topic, partition) in consumer.assignment()

    # -- commits ------------------------------------------------------------------------

    async def _commit(self, consumer: AIOKafkaConsumer, force: bool = False,
                      only: Collection[TopicPartition] | None = None) -> None:
        now = time.monotonic()
        if not force and now - self._last_commit < self.commit_every:
            return
        assignment = consumer.assignment()
        todo = {tp: off for tp, off in self.offsets.committable().items()
                if tp in assignment and (only is None or tp in only)
                and self._committed.get(tp) != off}
        self._last_commit = now
        if not todo:
            return
        try:
            await consumer.commit(todo)
        except KafkaError as exc:  # CommitFailedError, IllegalStateError among them
            # A rebalance in progress or the broker away: the next commit carries them.
            log.warning("%s: commit of %d partitions failed (%r)", self.name, len(todo), exc)
            return
        self._committed.update(todo)
        for tp, off in todo.items():
            self._gauge("commit", tp).set(off)

    # -- rebalances ---------------------------------------------------------------------

    async def _revoked(self, revoked: set[TopicPartition]) -> None:
        consumer = self._consumer
        if consumer is not None and revoked:
            await self._commit(consumer, force=True, only=revoked)
        self.offsets.forget(revoked)
        for tp in revoked:
            self._committed.pop(tp, None)
        if revoked and self.on_revoked is not None:
            self.on_revoked(revoked)

    # -- metrics ------------------------------------------------------------------------

    def _count(self, polled: dict[TopicPartition, list[Record]],
               consumer: AIOKafkaConsumer) -> None:
        faust = self._faust
        for tp, rs in polled.items():
            faust.messages_received.inc(len(rs))
            child = self._received.get(tp.topic)
            if child is None:
                child = self._received[tp.topic] = (
                    faust.messages_received_per_topics.labels(topic=tp.topic))
            child.inc(len(rs))
            end = consumer.highwater(tp)
            if end is not None:
                self._gauge("end", tp).set(end)

    def _gauge(self, kind: str, tp: TopicPartition) -> Any:
        child = self._gauges.get((kind, tp))
        if child is None:
            metric = (self._faust.topic_partition_end_offset if kind == "end"
                      else self._faust.topic_partition_offset_commited)
            child = self._gauges[(kind, tp)] = metric.labels(topic=tp.topic,
                                                             partition=tp.partition)
        return child


class _Listener(ConsumerRebalanceListener):
    """Commits and drops the revoked partitions' state before the group moves them."""

    def __init__(self, loop: ConsumeLoop) -> None:
        self._loop = loop

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._loop._revoked(set(revoked))  # noqa: SLF001 - the loop's own listener

    async def on_partitions_assigned(self, assigned: Any) -> None:
        if self._loop.on_assigned is not None:
            self._loop.on_assigned(set(assigned))
        self._loop.assigned.set()


async def _quietly(awaitable: Awaitable[Any]) -> None:
    try:
        await awaitable
    except Exception:  # noqa: BLE001 - stopping a consumer whose broker is gone
        log.debug("consumer stop failed", exc_info=True)

"""Decide's reader of its own output topics: mitigations and decisions, on every worker.

Why a plain aiokafka consumer and not a faust agent: a mitigation covers a whole thread or
board, whose contents are spread over every partition of `safety.signals.v1`, and a content's
signals may reach another worker than the one that decided it (a rebalance), so *every* decide
worker must know every mitigation and every decision — a consumer group would split them. The
follower assigns all partitions itself (no group, no commits), reads from the beginning and
keeps tailing:

- `safety.alerts.v1`: burst alerts that start mitigations, and `mitigation` alerts
  (announced, lifted — by this worker or another);
- `safety.verdicts.v1` and `safety.takedowns.v1` (`history`): every decision, taken before
  this process started or since, by any worker — so reviews of them apply, and signals for a
  content decided elsewhere open no second decision.

Two moments matter, both at the end offsets found at start: `alerts_ready` once the alerts are
read (the mitigations in force are known: decide decides nothing before, and announces only
then, since what it would announce may already be on the topic), `caught_up` once the
decisions are read too (decide applies no review before). After that, `sync()` waits until
the decisions published before the call are read: decide's deadline pass calls it before it
decides a window that is still missing signals.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timezone
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.codec import DecodeError, decode
from streams.events import CloudEvent
from streams.topics import TopicSpec

log = logging.getLogger(__name__)

_MAX_RECORDS = 2000  # per poll

#: (topic spec, event, Kafka record time) of each readable record of one poll.
Read = list[tuple[TopicSpec, CloudEvent[Any], datetime]]


class Follower:
    """Reads `follow` and `history` on every partition, for ever; `alerts_ready` does not
    wait for `history`."""

    def __init__(self, bootstrap: str, prefix: str, *, follow: Sequence[TopicSpec],
                 history: Sequence[TopicSpec],
                 on_batch: Callable[[Read, bool], Awaitable[None]]) -> None:
        self.bootstrap = bootstrap
        self.specs = {spec.full_name(prefix): spec for spec in (*follow, *history)}
        self.history = {spec.full_name(prefix) for spec in history}
        self.on_batch = on_batch
        self.alerts_ready = asyncio.Event()
        self.caught_up = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._history_partitions: list[TopicPartition] = []
        #: next offset to read, per `history` partition, once the records before it are fed
        self._read: dict[TopicPartition, int] = {}
        self._drained = False  # the last poll left nothing fetched unread (< _MAX_RECORDS)
        self._progress = asyncio.Event()  # set (and replaced) after each poll is fed

    async def sync(self) -> None:
        """Return once every decision published before the call has been fed to `on_batch`
        (its end offsets asked from the broker now: no guess at how far behind we are).

        Tansu's ListOffsets reports the base offset of a partition's last record batch + 1
        (measured), not its true end; a fetch returns whole batches, so once that offset is
        read and a poll left nothing fetched unread, the whole last batch is read too."""
        await self.caught_up.wait()
        while True:
            consumer, partitions = self._consumer, self._history_partitions
            if consumer is None:
                await self._next_poll()
                continue
            try:
                ends = await consumer.end_offsets(partitions)
            except Exception:  # noqa: BLE001 - the reader is restarting: ask again
                await asyncio.sleep(0.5)
                continue
            while consumer is self._consumer and (not self._drained or any(
                    self._read.get(tp, 0) < end for tp, end in ends.items())):
                await self._next_poll()
            if consumer is self._consumer:
                return

    async def _next_poll(self) -> None:
        await self._progress.wait()

    async def run(self) -> None:
        """Follow until cancelled; a broker error restarts the reader from the beginning
        (replaying is harmless: everything it feeds is idempotent)."""
        while True:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
                auto_offset_reset="earliest", fetch_max_wait_ms=100)
            try:
                await consumer.start()
                self._read, self._drained = {}, False
                self._consumer = consumer
                await self._consume(consumer)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - mitigations must outlive a broker hiccup
                log.exception("decide follower failed; reading again in 2 s")
                await asyncio.sleep(2)
            finally:
                self._consumer = None
                await consumer.stop()

    async def _assign(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        while True:
            await consumer.topics()  # refreshes metadata
            names = list(self.specs)
            partitions = [TopicPartition(name, p) for name in names
                          for p in sorted(consumer.partitions_for_topic(name) or ())]
            if {tp.topic for tp in partitions} == set(names):
                consumer.assign(partitions)
                await consumer.seek_to_beginning(*partitions)
                self._history_partitions = [tp for tp in partitions if tp.topic in self.history]
                return partitions
            await asyncio.sleep(0.5)  # topics not created yet

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        partitions = await self._assign(consumer)
        ends = await consumer.end_offsets(partitions)
        behind = {tp for tp, end in ends.items() if end > 0}
        while True:
            if behind:
                behind = {tp for tp in behind if await consumer.position(tp) < ends[tp]}
            if not self.alerts_ready.is_set() and all(tp.topic in self.history for tp in behind):
                await self.on_batch([], True)  # settle: announce what is due
                self.alerts_ready.set()
            if not behind and not self.caught_up.is_set():
                self.caught_up.set()
            batches = await consumer.getmany(timeout_ms=500, max_records=_MAX_RECORDS)
            batch: Read = []
            for tp, messages in batches.items():
                spec = self.specs[tp.topic]
                for m in messages:
                    try:
                        event = decode(spec, m.value)
                    except DecodeError:
                        continue  # intake dead-letters bad input; our outputs are valid
                    at = (datetime.fromtimestamp(m.timestamp / 1000, timezone.utc)
                          if m.timestamp and m.timestamp > 0 else datetime.now(timezone.utc))
                    batch.append((spec, event, at))
            if batch:
                await self.on_batch(batch, False)
            for tp in self._history_partitions:
                self._read[tp] = await consumer.position(tp)
            self._drained = sum(len(m) for m in batches.values()) < _MAX_RECORDS
            self._progress.set()
            self._progress = asyncio.Event()

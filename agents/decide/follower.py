"""Decide's reader of its own output topics: mitigations on every worker, memory after restarts.

Why a plain aiokafka consumer and not a faust agent: a mitigation covers a whole thread or
board, whose contents are spread over every partition of `safety.signals.v1`, so *every* decide
worker must know every mitigation — a consumer group would split the alerts between them. The
follower assigns all partitions itself (no group, no commits) and reads from the beginning:

- `safety.alerts.v1`, always: burst alerts that start mitigations, and `mitigation` alerts
  (announced, lifted — by this worker or another);
- `safety.verdicts.v1` and `safety.takedowns.v1`, up to the end offsets found at start only:
  the decisions taken before this process started, so their reviews still apply. Then they are
  paused; this process records its own decisions as it takes them.

Two moments matter, both at the end offsets found at start: `alerts_ready` once the alerts are
read (the mitigations in force are known: decide decides nothing before, and announces only
then, since what it would announce may already be on the topic), `caught_up` once the
decisions are read too (decide applies no review before).
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

#: (topic spec, event, Kafka record time) of each readable record of one poll.
Batch = list[tuple[TopicSpec, CloudEvent[Any], datetime]]


class Follower:
    """Reads `follow` (for ever) and `history` (until caught up) on every partition."""

    def __init__(self, bootstrap: str, prefix: str, *, follow: Sequence[TopicSpec],
                 history: Sequence[TopicSpec],
                 on_batch: Callable[[Batch, bool], Awaitable[None]]) -> None:
        self.bootstrap = bootstrap
        self.specs = {spec.full_name(prefix): spec for spec in (*follow, *history)}
        self.history = {spec.full_name(prefix) for spec in history}
        self.on_batch = on_batch
        self.alerts_ready = asyncio.Event()
        self.caught_up = asyncio.Event()

    async def run(self) -> None:
        """Follow until cancelled; a broker error restarts the reader from the beginning
        (replaying is harmless: everything it feeds is idempotent)."""
        while True:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
                auto_offset_reset="earliest", fetch_max_wait_ms=100)
            try:
                await consumer.start()
                await self._consume(consumer)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - mitigations must outlive a broker hiccup
                log.exception("decide follower failed; reading again in 2 s")
                await asyncio.sleep(2)
            finally:
                await consumer.stop()

    async def _assign(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        while True:
            await consumer.topics()  # refreshes metadata
            names = [n for n in self.specs
                     if n not in self.history or not self.caught_up.is_set()]
            partitions = [TopicPartition(name, p) for name in names
                          for p in sorted(consumer.partitions_for_topic(name) or ())]
            if {tp.topic for tp in partitions} == set(names):
                consumer.assign(partitions)
                await consumer.seek_to_beginning(*partitions)
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
                consumer.pause(*(tp for tp in partitions if tp.topic in self.history))
                self.caught_up.set()
            batches = await consumer.getmany(timeout_ms=500, max_records=2000)
            batch: Batch = []
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

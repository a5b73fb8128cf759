"""The console's consumer: keeps its store in step with the pipeline's topics.

It reads safety.takedowns.v1, safety.verdicts.v1 (holds), safety.alerts.v1, safety.reviews.v1,
forum.reports.v1 (report counts) and the posts/images topics (only *where* each event is and
who wrote it; image bytes are not kept). Why a plain aiokafka consumer inside the web service
and not a faust agent: the store is local to the process that serves the console, so that
process must see *every* partition. A consumer group would split partitions between console
replicas (and a faust agent would share the group of whatever roles the worker runs); instead
the feed assigns all partitions itself and commits its offsets into the store, in the same
SQLite transaction as the rows they produced. Every replica keeps a complete store, a restart
resumes exactly where the store left off, and redelivery is harmless (idempotent upserts).

`RecordFetcher` reads one record back by (topic, partition, offset): the console fetches an
image's bytes only when a moderator opens a held, non-csam item, and keeps only the blurred
thumbnail it makes from them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from streams.codec import DecodeError, decode
from streams.topics import (
    ALERTS,
    IMAGES,
    POSTS,
    REPORTS,
    REVIEWS,
    TAKEDOWNS,
    VERDICTS,
    TopicSpec,
)
from vigil.console.store import ConsoleStore, content_key, epoch

log = logging.getLogger(__name__)
FEED_TOPICS: tuple[TopicSpec, ...] = (POSTS, IMAGES, REPORTS, VERDICTS, TAKEDOWNS, ALERTS,
                                      REVIEWS)


_RAW = msgspec.json.Decoder(dict)


def ip_hash(value: bytes | None, account: str) -> str | None:
    """The forum's optional `data.<account>.ip_hash`, an extra field the typed events drop
    (docs/contract.md); read only from messages that mention it."""
    if not value or b'"ip_hash"' not in value:
        return None
    try:
        found = _RAW.decode(value).get("data", {}).get(account, {}).get("ip_hash")
    except (msgspec.DecodeError, AttributeError):
        return None
    return found if isinstance(found, str) and found else None


def apply_event(store: ConsoleStore, spec: TopicSpec, value: bytes | None, *,
                topic: str, partition: int, offset: int, record_time: float) -> bool:
    """Apply one message to the store; False when it is not a valid event (intake
    dead-letters those)."""
    try:
        event = decode(spec, value)
    except DecodeError:
        return False
    at = epoch(event.time, record_time)
    data = event.data
    if spec is VERDICTS:
        store.apply_verdict(data, at, event.id)
    elif spec is TAKEDOWNS:
        store.apply_takedown(data, at, event.id)
    elif spec is ALERTS:
        store.apply_alert(data)
    elif spec is REPORTS:
        store.apply_report(data, at, ip_hash(value, "reporter"))
    elif spec is REVIEWS:
        store.apply_review(data, at, event.id)
    elif spec is POSTS:
        store.record_content(content_key("post", data.post_id), topic, partition, offset,
                             data, at, ip_hash(value, "author"))
    elif spec is IMAGES:
        store.record_content(content_key("image", data.image_id), topic, partition, offset,
                             data, at, ip_hash(value, "author"))
    return True


class Feed:
    """Consumes `FEED_TOPICS` (all partitions) into `store` until stopped."""

    def __init__(self, store: Any, bootstrap: str, prefix: str) -> None:
        self.store = store
        self.bootstrap = bootstrap
        self.by_name = {spec.full_name(prefix): spec for spec in FEED_TOPICS}
        self.last_poll: float | None = None  # monotonic s of the last successful poll
        self.applied = 0
        self._task: asyncio.Task[None] | None = None
        self._consumer: AIOKafkaConsumer | None = None

    @property
    def healthy(self) -> bool:
        """Polled the broker in the last 30 s."""
        return self.last_poll is not None and time.monotonic() - self.last_poll < 30

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="vigil.console.feed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - shutting down
                pass
        if self._consumer is not None:
            await self._consumer.stop()

    async def _assign(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        await consumer.topics()  # refreshes metadata
        partitions: list[TopicPartition] = []
        for name in self.by_name:
            for p in sorted(consumer.partitions_for_topic(name) or ()):
                partitions.append(TopicPartition(name, p))
        consumer.assign(partitions)
        stored = self.store.offsets()
        for tp in partitions:
            if (tp.topic, tp.partition) in stored:
                consumer.seek(tp, stored[(tp.topic, tp.partition)] + 1)
            else:
                await consumer.seek_to_beginning(tp)
        return partitions

    async def _run(self) -> None:
        while True:
            try:
                await self._consume()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the console must outlive a broker hiccup
                log.exception("console feed failed; restarting in 2 s")
                if self._consumer is not None:
                    await self._consumer.stop()
                    self._consumer = None
                await asyncio.sleep(2)

    async def _consume(self) -> None:
        consumer = self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
            auto_offset_reset="earliest", fetch_max_wait_ms=200,
            max_partition_fetch_bytes=8 * 1024 * 1024, fetch_max_bytes=32 * 1024 * 1024,
        )
        await consumer.start()
        assigned = await self._assign(consumer)
        while True:
            if len(assigned) < len(self.by_name):  # topics not created yet: look again
                await asyncio.sleep(1)
                assigned = await self._assign(consumer)
            batches = await consumer.getmany(timeout_ms=500, max_records=1000)
            self.last_poll = time.monotonic()
            if not batches:
                continue
            await asyncio.to_thread(self._apply, batches)

    def _apply(self, batches: dict[TopicPartition, list[Any]]) -> None:
        offsets: dict[tuple[str, int], int] = {}
        with self.store.transaction():
            for tp, messages in batches.items():
                spec = self.by_name[tp.topic]
                for m in messages:
                    if apply_event(self.store, spec, m.value, topic=tp.topic,
                                   partition=tp.partition, offset=m.offset,
                                   record_time=(m.timestamp or 0) / 1000 or time.time()):
                        self.applied += 1
                    offsets[(tp.topic, tp.partition)] = m.offset
            self.store.set_offsets(offsets)


class RecordFetcher:
    """Reads single records back by (topic, partition, offset) — image bytes on demand."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self._consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()

    async def fetch(self, topic: str, partition: int, offset: int,
                    timeout: float = 5.0) -> bytes | None:
        """The record's value, or None if it is gone (retention) or unreachable."""
        async with self._lock:
            try:
                if self._consumer is None:
                    self._consumer = AIOKafkaConsumer(
                        bootstrap_servers=self.bootstrap, group_id=None,
                        enable_auto_commit=False, fetch_max_wait_ms=100,
                        max_partition_fetch_bytes=8 * 1024 * 1024)
                    await self._consumer.start()
                tp = TopicPartition(topic, partition)
                self._consumer.assign([tp])
                self._consumer.seek(tp, offset)
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    batch = await self._consumer.getmany(tp, timeout_ms=300, max_records=50)
                    for message in batch.get(tp, []):
                        if message.offset == offset:
                            return message.value  # type: ignore[no-any-return]
                        if message.offset > offset:
                            return None
            except KafkaError:
                log.warning("console could not read %s[%d]@%d", topic, partition, offset)
            return None

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

"""agents.batches through the real broker: records the outbox hands over as per-partition
batches land where aiokafka's own `send` puts them, in order, and all of them.

Co-partitioning is contract inside Vigil: intake and classify produce the signals of one
content from different processes, and decide needs them on one partition.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import MessageSizeTooLargeError

from agents.batches import queue
from vigil.broker import EmbeddedBroker

pytestmark = pytest.mark.integration

PARTITIONS = 6


async def _topics(bootstrap: str, *names: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, PARTITIONS, 1) for n in names])
    finally:
        await admin.close()


async def _read(bootstrap: str, topic: str, count: int) -> dict[bytes, list[tuple[int, bytes]]]:
    """key → [(partition, value)] of the first `count` records of `topic`, in offset order."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
    out: dict[bytes, list[tuple[int, bytes]]] = defaultdict(list)
    seen = 0
    try:
        async with asyncio.timeout(60):
            while seen < count:
                for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                    for r in records:
                        out[r.key].append((tp.partition, r.value))
                    seen += len(records)
    finally:
        await consumer.stop()
    return out


async def test_batched_records_land_on_the_partition_send_chooses_in_order(
        broker: EmbeddedBroker) -> None:
    batched, single = f"batches-{uuid.uuid4().hex[:8]}", f"single-{uuid.uuid4().hex[:8]}"
    await _topics(broker.bootstrap, batched, single)
    # Small batches, so that one partition's records need several of them (order across them).
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, max_batch_size=4096)
    await producer.start()
    keys = [f"content-{i % 97}".encode() for i in range(1500)]
    try:
        records = [(batched, key, b"%d" % i + b"." * 100) for i, key in enumerate(keys)]
        queued, unqueued, error = await queue(producer, records)
        assert (unqueued, error) == ([], None)
        assert len(queued) > PARTITIONS  # several batches for some partitions
        await asyncio.gather(*(q.future for q in queued))
        assert sorted(r for q in queued for r in q.records) == sorted(records)
        for i, key in enumerate(keys[:97]):
            await producer.send(single, b"%d" % i, key=key)
        await producer.flush()
    finally:
        await producer.stop()
    got = await _read(broker.bootstrap, batched, len(keys))
    reference = await _read(broker.bootstrap, single, 97)
    for key, landed in got.items():
        assert {p for p, _ in landed} == {reference[key][0][0]}  # where `send` put that key
        numbers = [int(value.split(b".")[0]) for _, value in landed]
        assert numbers == sorted(numbers)  # in the order they were added


async def test_a_record_over_the_request_limit_raises_and_nothing_is_queued(
        broker: EmbeddedBroker) -> None:
    topic = f"batches-big-{uuid.uuid4().hex[:8]}"
    await _topics(broker.bootstrap, topic)
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, max_request_size=10_000)
    await producer.start()
    try:
        with pytest.raises(MessageSizeTooLargeError):
            await queue(producer, [(topic, b"a", b"small"), (topic, b"b", b"x" * 20_000)])
        await producer.send_and_wait(topic, b"after", key=b"a")  # small's partition
    finally:
        await producer.stop()
    got = await _read(broker.bootstrap, topic, 1)
    # "small" was not sent either (it would come first on its partition): queue raised first.
    assert [value for _, value in got[b"a"]] == [b"after"]

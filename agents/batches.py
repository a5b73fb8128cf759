"""Hands an outbox's records to aiokafka as one record batch per topic-partition.

Why not aiokafka's per-record `send`: it costs ≈ 12 µs of CPU per record on these machines —
a metadata look-up, the partitioner, a log call, and a future per record that aiokafka resolves
one by one when the broker acks — against ≈ 4–5 µs when the batches are built here and handed
over with `send_batch` (one future per batch; docs/performance.md, "Batched produce"). The hot
agents emit two to four records per input, so this is a large share of their event loop.

The partition of every record is chosen by the producer's own partitioner over the topic's
partitions, exactly as `send` would (murmur2 of the key, as the Java client does; a random
available partition for a record without key). That matters: decide relies on every signal of
one content arriving on one partition, whichever process produced it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, KafkaTimeoutError, MessageSizeTooLargeError
from aiokafka.record.default_records import DefaultRecordBatchBuilder

Record = tuple[str, bytes | None, bytes]  # topic, key, value


@dataclass
class Queued:
    """One record batch handed to the producer: its delivery future and its records."""

    future: asyncio.Future[Any]
    records: list[Record] = field(default_factory=list)


def retriable(exc: BaseException | None) -> bool:
    """Whether sending again can succeed (broker away, leader moving, buffer full, timeout)."""
    return isinstance(exc, KafkaTimeoutError) or (
        isinstance(exc, KafkaError) and bool(getattr(exc, "retriable", False)))


def check_size(producer: AIOKafkaProducer, key: bytes | None, value: bytes) -> None:
    """Raise `MessageSizeTooLargeError` for a record the producer would refuse (as `send` does):
    a batch holding it would be rejected whole, with the records beside it."""
    limit: int = producer._max_request_size  # noqa: SLF001 - the producer's own limit
    if len(value) + len(key or b"") + 64 > limit and (
            DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, []) > limit):
        raise MessageSizeTooLargeError(
            f"a record of {len(value)} bytes is over the producer's max_request_size ({limit})")


async def queue(producer: AIOKafkaProducer, records: Sequence[Record]
                ) -> tuple[list[Queued], list[Record], BaseException | None]:
    """Hand `records` to `producer` in per-partition batches, in order within each partition.

    Returns the queued batches, the records not queued (a retriable error stopped it: missing
    metadata, a full send buffer) and that error. A non-retriable error raises.
    """
    partitioner = producer._partitioner  # noqa: SLF001 - the producer's configured one
    client = producer.client
    partitions: dict[str, tuple[list[int], list[int]]] = {}
    open_batches: dict[tuple[str, int], tuple[Any, list[Record]]] = {}
    full: list[tuple[str, int, Any, list[Record]]] = []
    for record in records:
        topic, key, value = record
        check_size(producer, key, value)
        known = partitions.get(topic)
        if known is None:
            try:
                await client._wait_on_metadata(topic)  # noqa: SLF001 - as `send` does
            except KafkaError as exc:
                if not retriable(exc):
                    raise
                return [], list(records), exc
            cluster = client.cluster
            known = partitions[topic] = (
                sorted(cluster.partitions_for_topic(topic) or ()),
                sorted(cluster.available_partitions_for_topic(topic) or ()))
        partition = partitioner(key, *known)
        builder, members = open_batches.get((topic, partition), (None, []))
        if builder is None or builder.append(timestamp=None, key=key, value=value) is None:
            if builder is not None:  # full: it goes as it is, a new one takes the record
                full.append((topic, partition, builder, members))
            builder, members = producer.create_batch(), []
            builder.append(timestamp=None, key=key, value=value)
            open_batches[(topic, partition)] = (builder, members)
        members.append(record)
    full.extend((topic, partition, builder, members)
                for (topic, partition), (builder, members) in open_batches.items())
    return await _send(producer, full)


async def _send(producer: AIOKafkaProducer, batches: list[tuple[str, int, Any, list[Record]]]
                ) -> tuple[list[Queued], list[Record], BaseException | None]:
    queued: list[Queued] = []
    for i, (topic, partition, builder, members) in enumerate(batches):
        builder.close()  # complete: the sender may take it at once, without lingering
        try:
            future = await producer.send_batch(builder, topic, partition=partition)
        except KafkaError as exc:
            if not retriable(exc):
                raise
            return queued, [r for *_, rest in batches[i:] for r in rest], exc
        queued.append(Queued(future, members))
    return queued, [], None

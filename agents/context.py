"""What the composition hands every agent: the faust app, topics, signer, metrics, settings.

Agents sit below the composition (`vigil/`) in the import layers, so they do not import its
settings class; `AgentSettings` is the part of it they read, as a protocol.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import faust
from faust.types import EventT

from agents.batches import Queued, Record, retriable
from agents.batches import queue as queue_batches
from agents.consumer import Backlog, ConsumeLoop, Handler, LoopSettings
from agents.metrics import Metrics
from streams.codec import DecodeError, decode
from streams.events import CloudEvent
from streams.signing import Signer
from streams.topics import TopicSpec

log = logging.getLogger(__name__)
_RETRY_FIRST_S = 0.2  # back-off before re-sending records whose delivery failed, doubling…
_RETRY_MAX_S = 5.0  # …up to this


class AgentSettings(Protocol):
    """Settings agents read (the composition's `Settings` satisfies it)."""

    @property
    def topic_prefix(self) -> str: ...
    @property
    def batch_size(self) -> int: ...
    @property
    def batch_within(self) -> float: ...
    @property
    def banks_path(self) -> Path: ...
    @property
    def banks_reload_seconds(self) -> float: ...
    @property
    def decide_deadline_ms(self) -> int: ...


@dataclass
class AgentContext:
    """Shared, per-process wiring for agents; built once by `vigil.app.build_app`."""

    app: faust.App
    settings: AgentSettings
    metrics: Metrics
    signer: Signer | None  # only roles in `agents.SIGNING_ROLES` get one
    checkpoint_key: bytes | None = None  # only roles in `agents.CHECKPOINT_ROLES` get one
    #: The plain consume loops registered by `consume` (readiness asks each if it joined).
    loops: list[ConsumeLoop] = field(default_factory=list)
    #: The verdict path's backlog in this process, which background loops yield to.
    backlog: Backlog = field(default_factory=Backlog)
    _topics: dict[str, faust.TopicT] = field(default_factory=dict)
    _names: dict[str, str] = field(default_factory=dict)  # spec name → full name
    _sent_children: dict[str, Any] = field(default_factory=dict)  # topic → metric child

    def topic(self, spec: TopicSpec) -> faust.TopicT:
        """The faust topic for `spec` (raw bytes in and out: `streams.codec` does the rest)."""
        name = spec.full_name(self.settings.topic_prefix)
        if name not in self._topics:
            self._topics[name] = self.app.topic(
                name,
                key_type=bytes,
                value_type=bytes,
                key_serializer="raw",
                value_serializer="raw",
                partitions=spec.partitions,
            )
        return self._topics[name]

    def topic_name(self, spec: TopicSpec) -> str:
        """`spec`'s topic name under this deployment's prefix."""
        name = self._names.get(spec.name)
        if name is None:
            name = self._names[spec.name] = spec.full_name(self.settings.topic_prefix)
        return name

    async def send(self, spec: TopicSpec, key: bytes | None, value: bytes) -> None:
        """Queue one record for `spec`; returns once it is queued, not delivered.

        At-least-once still holds: faust flushes its producer before it commits the offsets of
        the inputs that caused these records. The record goes straight to faust's producer
        (not through `Topic.send`, whose per-record futures, callbacks and sensors cost more
        than the send itself); a delivery that fails is logged and counted like faust does.
        Hot paths use `outbox()` instead, which also waits for delivery once per batch.
        """
        producer = await self.app.maybe_start_producer()
        name = self.topic_name(spec)
        future = await producer.send(name, key, value, None, None, None)
        future.add_done_callback(self._sent)
        self._sent_child(name).inc()

    def _sent(self, future: asyncio.Future[Any]) -> None:
        faust_metrics = self.metrics.faust_metrics()
        if future.cancelled() or future.exception() is not None:
            faust_metrics.total_error_messages_sent.inc()
            log.error("record not delivered: %r",
                      None if future.cancelled() else future.exception())
        else:
            faust_metrics.total_sent_messages.inc()

    def _sent_child(self, topic: str) -> Any:
        child = self._sent_children.get(topic)
        if child is None:
            child = self._sent_children[topic] = (
                self.metrics.faust_metrics().topic_messages_sent.labels(topic=f"topic.{topic}"))
        return child

    async def queue_batches(self, records: list[Record]
                            ) -> tuple[list[Queued], list[Record], BaseException | None]:
        """Hand `records` to the producer as per-partition batches (`agents.batches`): what
        `Outbox` sends through. The producer is faust's own aiokafka producer, so faust's
        flush before its commits and on shutdown covers these records too."""
        producer = await self.app.maybe_start_producer()
        return await queue_batches(producer._ensure_producer(), records)  # noqa: SLF001

    def consume(self, name: str, specs: Sequence[TopicSpec], handle: Handler, *,
                on_revoked: Callable[[set[Any]], None] | None = None,
                on_assigned: Callable[[set[Any]], None] | None = None,
                verdict_path: bool = False, background: bool = False) -> ConsumeLoop:
        """A plain aiokafka consume loop over `specs` (agents/consumer.py: the hot agents'
        transport), run by the faust app as a task, in group `<app id>.<name>`.

        `verdict_path`: a verdict waits on this loop (it reports its backlog); `background`:
        nothing waits on it, so it yields to those loops (`agents.consumer.Backlog`)."""
        settings: LoopSettings = self.settings  # type: ignore[assignment]  # the composition's
        loop = ConsumeLoop(
            name=name, group=f"{self.app.conf.id}.{name}",
            topics=[self.topic_name(spec) for spec in specs], settings=settings,
            handle=handle, metrics=self.metrics.faust_metrics(), on_revoked=on_revoked,
            on_assigned=on_assigned, reports_to=self.backlog if verdict_path else None,
            yields_to=self.backlog if background else None,
            deferred=self.metrics.deferred_seconds.labels(name) if background else None)

        async def run() -> None:
            await loop.run()

        run.__name__ = run.__qualname__ = f"consume_{name.replace('.', '_')}"
        self.app.task(run)
        self.loops.append(loop)
        return loop

    def outbox(self) -> Outbox:
        """A batch of output records, delivered together (see `Outbox`)::

            async for events in stream.take_events(...):
                async with ctx.outbox() as out:
                    for ...:
                        out.add(SIGNALS, *encode(...))
                # every record is delivered here, before take_events acks the inputs
        """
        return Outbox(self)


class Outbox:
    """Output records of one input batch, sent together and awaited once: the agents' hot path.

    `add` only collects (no I/O, no await). `flush` (or leaving `async with`) hands the records
    to faust's aiokafka producer as one record batch per topic-partition (`agents.batches`: a
    future per batch, not per record; a few large produce requests) and returns once *every*
    record is delivered (acks from the broker). Records whose delivery fails with a retriable
    error (broker down, leader moving, request timeout) are sent again with back-off until
    they are delivered, so an agent that flushes before it takes its next batch never lets
    faust commit the offset of an input whose outputs are not on the broker: at-least-once,
    without per-record awaits.

    faust's `Topic.send` machinery (futures, callbacks, sensors per record) and aiokafka's
    per-record `send` are bypassed; the `faust_topic_messages_sent_total` and send-latency
    metrics are kept up per flush.
    """

    __slots__ = ("_ctx", "_records")

    def __init__(self, ctx: AgentContext) -> None:
        self._ctx = ctx
        self._records: list[Record] = []

    def add(self, spec: TopicSpec, key: bytes | None, value: bytes) -> None:
        """Collect one record for `spec` (sent by `flush`)."""
        self._records.append((self._ctx.topic_name(spec), key, value))

    def __len__(self) -> int:
        return len(self._records)

    async def __aenter__(self) -> Outbox:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        # On an error too: what the batch produced before it failed is still delivered (as
        # per-record sends did), then the error propagates.
        if exc_type is None or issubclass(exc_type, Exception):
            await self.flush()

    async def flush(self) -> None:
        """Send every collected record and wait until all are delivered (retrying failures)."""
        records, self._records = self._records, []
        delay = _RETRY_FIRST_S
        while records:
            failed, error = await self._send(records)
            if not failed:
                return
            log.warning("%d of %d records not delivered (%r); sending them again in %.1f s",
                        len(failed), len(records), error, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RETRY_MAX_S)
            records = failed

    async def _send(self, records: list[Record]) -> tuple[list[Record], BaseException | None]:
        """One attempt: (records not delivered, one of their errors)."""
        started = time.monotonic()
        # Queueing only suspends when aiokafka's buffer is full or metadata is missing. It runs
        # shielded: a worker stopping mid-batch still hands every record to the producer, which
        # is flushed before the worker stops.
        queued, failed, queue_error = await asyncio.shield(self._ctx.queue_batches(records))
        results = await asyncio.gather(*(q.future for q in queued), return_exceptions=True)
        for res in results:
            if isinstance(res, BaseException) and not retriable(res):
                raise res
        failed = [record for q, res in zip(queued, results, strict=True)
                  if isinstance(res, BaseException) for record in q.records] + failed
        error = next((r for r in results if isinstance(r, BaseException)), queue_error)
        self._count(records, len(records) - len(failed), time.monotonic() - started)
        return failed, error

    def _count(self, records: list[Record], delivered: int,
               seconds: float) -> None:
        faust_metrics = self._ctx.metrics.faust_metrics()
        for topic, n in Counter(topic for topic, _, _ in records).items():
            self._ctx._sent_child(topic).inc(n)  # noqa: SLF001 - the context's own cache
        faust_metrics.total_sent_messages.inc(delivered)
        if delivered < len(records):
            faust_metrics.total_error_messages_sent.inc(len(records) - delivered)
        faust_metrics.producer_send_latency.observe(seconds * 1000)  # once per flush


class Agent(Protocol):
    """An agent module: a name and a function that registers its faust agents/timers."""

    NAME: str

    def register(self, ctx: AgentContext) -> None: ...


Registrar = Callable[[AgentContext], Any]


def decode_events(
    spec: TopicSpec, events: Sequence[EventT]
) -> Iterator[tuple[EventT, CloudEvent[Any] | None, DecodeError | None]]:
    """Decode a batch of raw faust events of `spec`: (event, decoded or None, error or None)."""
    for event in events:
        try:
            yield event, decode(spec, event.value), None
        except DecodeError as exc:
            yield event, None, exc

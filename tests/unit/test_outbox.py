"""agents.context: the batched emitter (`Outbox`) and `AgentContext.send`, against a fake producer.

The outbox is what keeps at-least-once on the hot paths: a batch's records are delivered
(every future resolved) before `flush` returns, retriable failures are sent again, and
non-retriable ones raise instead of being dropped.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError, RequestTimedOutError

import agents.context as context
from agents.batches import Queued, Record, retriable
from agents.context import AgentContext
from agents.metrics import Metrics
from streams.topics import DEADLETTER, SIGNALS


class FakeProducer:
    """faust's producer for `AgentContext.send`, and the batch queue `Outbox` sends through:
    records every record queued; `fail` maps a value to the errors its next deliveries end
    with; `fail_queue` is raised (once) by the next queueing."""

    def __init__(self, fail: dict[bytes, list[BaseException]] | None = None,
                 fail_queue: BaseException | None = None) -> None:
        self.sent: list[tuple[str, bytes | None, bytes]] = []
        self.fail = fail or {}
        self.fail_queue = fail_queue

    def _future(self, value: bytes) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        errors = self.fail.get(value)
        if errors:
            asyncio.get_running_loop().call_soon(future.set_exception, errors.pop(0))
        else:
            asyncio.get_running_loop().call_soon(future.set_result, "metadata")
        return future

    async def send(self, topic: str, key: bytes | None, value: bytes, partition: Any,
                   timestamp: Any, headers: Any) -> asyncio.Future[Any]:
        self.sent.append((topic, key, value))
        return self._future(value)

    async def queue_batches(self, records: list[Record]
                            ) -> tuple[list[Queued], list[Record], BaseException | None]:
        """One batch per record (a batch fails as a whole: one record is the simplest case)."""
        if self.fail_queue is not None:
            exc, self.fail_queue = self.fail_queue, None
            if not retriable(exc):
                raise exc
            return [], list(records), exc
        self.sent.extend(records)
        return [Queued(self._future(value), [(topic, key, value)])
                for topic, key, value in records], [], None


def make_ctx(producer: FakeProducer) -> AgentContext:
    async def maybe_start_producer() -> FakeProducer:
        return producer

    app: Any = SimpleNamespace(maybe_start_producer=maybe_start_producer)
    ctx = AgentContext(app=app, settings=SimpleNamespace(topic_prefix="x."),  # type: ignore[arg-type]
                       metrics=Metrics(), signer=None)
    ctx.queue_batches = producer.queue_batches  # type: ignore[method-assign]
    return ctx


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(context, "_RETRY_FIRST_S", 0.001)


async def test_outbox_sends_every_record_in_order_when_the_block_ends() -> None:
    producer = FakeProducer()
    ctx = make_ctx(producer)
    async with ctx.outbox() as out:
        out.add(SIGNALS, b"k1", b"v1")
        out.add(DEADLETTER, None, b"v2")
        assert producer.sent == []  # collected, not sent, until the batch is done
        assert len(out) == 2
    assert producer.sent == [("x.safety.signals.v1", b"k1", b"v1"),
                             ("x.safety.deadletter.v1", None, b"v2")]
    assert len(out) == 0


async def test_outbox_resends_records_whose_delivery_failed_retriably() -> None:
    producer = FakeProducer(fail={b"v2": [RequestTimedOutError(), KafkaTimeoutError()]})
    out = make_ctx(producer).outbox()
    for value in (b"v1", b"v2", b"v3"):
        out.add(SIGNALS, b"k", value)
    await out.flush()
    assert [v for _, _, v in producer.sent] == [b"v1", b"v2", b"v3", b"v2", b"v2"]


async def test_outbox_retries_when_queueing_fails_retriably() -> None:
    producer = FakeProducer(fail_queue=KafkaTimeoutError())
    out = make_ctx(producer).outbox()
    out.add(SIGNALS, b"k", b"v1")
    await out.flush()
    assert [v for _, _, v in producer.sent] == [b"v1"]


async def test_outbox_raises_a_queueing_error_that_retrying_cannot_fix() -> None:
    producer = FakeProducer(fail_queue=MessageSizeTooLargeError())
    out = make_ctx(producer).outbox()
    out.add(SIGNALS, b"k", b"v1")
    with pytest.raises(MessageSizeTooLargeError):
        await out.flush()


async def test_outbox_raises_a_delivery_error_that_retrying_cannot_fix() -> None:
    producer = FakeProducer(fail={b"big": [MessageSizeTooLargeError()]})
    out = make_ctx(producer).outbox()
    out.add(SIGNALS, b"k", b"big")
    with pytest.raises(MessageSizeTooLargeError):
        await out.flush()


async def test_outbox_delivers_what_a_failing_batch_produced_then_reraises() -> None:
    producer = FakeProducer()
    ctx = make_ctx(producer)
    with pytest.raises(RuntimeError):
        async with ctx.outbox() as out:
            out.add(SIGNALS, b"k", b"v1")
            raise RuntimeError("boom")
    assert [v for _, _, v in producer.sent] == [b"v1"]


async def test_send_queues_one_record_and_counts_it() -> None:
    producer = FakeProducer()
    ctx = make_ctx(producer)
    await ctx.send(SIGNALS, b"k", b"v")
    await asyncio.sleep(0)  # let the delivery callback run
    assert producer.sent == [("x.safety.signals.v1", b"k", b"v")]
    sent = ctx.metrics.registry.get_sample_value(
        "faust_topic_messages_sent_total", {"topic": "topic.x.safety.signals.v1"})
    assert sent == 1

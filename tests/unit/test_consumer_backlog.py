"""Verdicts first: background loops (burst) poll only once the verdict path has caught up, at
most `max_defer` later, and a small poll at a time; verdict-path loops report their backlog."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from aiokafka import TopicPartition

from agents.consumer import BACKGROUND_RECORDS, Backlog, ConsumeLoop, behind

TP = TopicPartition("t", 0)


def records(*offsets: int) -> list[Any]:
    return [SimpleNamespace(topic="t", partition=0, offset=o, key=None, value=b"x",
                            timestamp=0) for o in offsets]


class FakeConsumer:
    """The part of AIOKafkaConsumer a loop uses; `getmany` hands out `polls` one by one."""

    def __init__(self, polls: list[dict[TopicPartition, list[Any]]], end: int | None) -> None:
        self.polls, self.end = polls, end
        self.asked: list[int] = []  # max_records of every getmany

    async def getmany(self, timeout_ms: int = 0, max_records: int = 0) -> dict[Any, Any]:
        self.asked.append(max_records)
        if self.polls:
            return self.polls.pop(0)
        await asyncio.sleep(0.01)
        return {}

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.end

    def assignment(self) -> set[TopicPartition]:
        return {TP}

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        return None


def settings(batch_size: int = 500) -> Any:
    return SimpleNamespace(batch_size=batch_size, batch_within=0.01, bootstrap_servers="",
                           consumer_max_fetch_size=1, consumer_fetch_max_wait_ms=1,
                           broker_session_timeout=10, broker_rebalance_timeout=10,
                           broker_heartbeat_interval=3)


def metrics() -> Any:
    counter = SimpleNamespace(inc=lambda *a: None, labels=lambda **k: counter,
                              set=lambda *a: None)
    return SimpleNamespace(messages_received=counter, messages_received_per_topics=counter,
                           topic_partition_end_offset=counter,
                           topic_partition_offset_commited=counter)


def loop(handled: list[int], **kwargs: Any) -> ConsumeLoop:
    async def handle(batch: Any) -> None:
        handled.extend(r.offset for r in batch.records)

    return ConsumeLoop(name=kwargs.pop("name", "l"), group="g", topics=["t"],
                       settings=kwargs.pop("settings", settings()), handle=handle,
                       metrics=metrics(), **kwargs)


def test_a_poll_leaves_input_waiting_when_it_is_full_or_short_of_the_high_watermark() -> None:
    assert behind({TP: records(0, 1, 2)}, FakeConsumer([], end=3), max_records=3)
    assert behind({TP: records(0, 1)}, FakeConsumer([], end=9), max_records=100)
    assert not behind({TP: records(0, 1)}, FakeConsumer([], end=2), max_records=100)
    assert not behind({}, FakeConsumer([], end=None), max_records=100)


async def test_wait_returns_at_once_when_no_verdict_path_loop_is_behind() -> None:
    backlog = Backlog(max_defer=5.0)
    backlog.report("intake", False)
    assert await backlog.wait() == 0.0


async def test_wait_lasts_until_every_loop_that_was_behind_has_caught_up() -> None:
    backlog = Backlog(max_defer=5.0)
    backlog.report("intake", True)
    backlog.report("decide", True)
    waiter = asyncio.create_task(backlog.wait())
    await asyncio.sleep(0.02)
    backlog.report("intake", False)
    await asyncio.sleep(0.02)
    assert not waiter.done()  # decide still behind
    assert backlog.behind == {"decide"}
    backlog.report("decide", False)
    waited = await asyncio.wait_for(waiter, 1.0)
    assert waited > 0.0


async def test_a_background_loop_is_deferred_at_most_max_defer() -> None:
    backlog = Backlog(max_defer=0.05)
    backlog.report("intake", True)  # and it never catches up
    waited = await asyncio.wait_for(backlog.wait(), 1.0)
    assert waited >= 0.05


async def test_a_background_loop_polls_only_once_the_verdict_path_caught_up() -> None:
    backlog = Backlog(max_defer=30.0)
    backlog.report("intake", True)
    handled: list[int] = []
    background = loop(handled, yields_to=backlog)
    consumer = FakeConsumer([{TP: records(0, 1)}], end=2)
    task = asyncio.create_task(background._consume(consumer))  # type: ignore[arg-type]
    try:
        await asyncio.sleep(0.05)
        assert consumer.asked == [] and handled == []
        backlog.report("intake", False)
        for _ in range(100):
            await asyncio.sleep(0.005)
            if handled:
                break
        assert handled == [0, 1]
        assert consumer.asked[0] == BACKGROUND_RECORDS  # small polls, short stretches
        assert background.deferred_s > 0.0
    finally:
        task.cancel()


async def test_under_sustained_overload_a_background_loop_takes_turns_not_starves() -> None:
    backlog = Backlog(max_defer=0.1)
    backlog.report("intake", True)  # and it never catches up
    handled: list[int] = []
    background = loop(handled, yields_to=backlog)
    consumer = FakeConsumer([{TP: records(i)} for i in range(1000)], end=10_000)
    task = asyncio.create_task(background._consume(consumer))  # type: ignore[arg-type]
    try:
        await asyncio.sleep(0.05)
        assert handled == []  # still deferred
        for _ in range(100):
            await asyncio.sleep(0.01)
            if len(handled) > 5:
                break
        # the wait ran out: polls follow each other without a wait, not one per max_defer
        assert len(handled) > 5
        assert background.deferred_s < 0.2
    finally:
        task.cancel()


async def test_a_verdict_path_loop_reports_its_backlog_after_each_poll() -> None:
    backlog = Backlog()
    seen: list[tuple[list[int], frozenset[str]]] = []  # each batch, and the backlog meanwhile

    async def handle(batch: Any) -> None:
        seen.append(([r.offset for r in batch.records], backlog.behind))

    foreground = ConsumeLoop(name="intake", group="g", topics=["t"], settings=settings(),
                             handle=handle, metrics=metrics(), reports_to=backlog)
    assert foreground.max_records == 500  # VIGIL_BATCH_SIZE: only background polls are small
    consumer = FakeConsumer([{TP: records(0, 1)}, {TP: records(2, 3)}], end=4)
    task = asyncio.create_task(foreground._consume(consumer))  # type: ignore[arg-type]
    try:
        for _ in range(100):
            await asyncio.sleep(0.005)
            if len(seen) == 2:
                break
        assert seen == [([0, 1], {"intake"}), ([2, 3], frozenset())]
        assert backlog.behind == frozenset()
    finally:
        task.cancel()

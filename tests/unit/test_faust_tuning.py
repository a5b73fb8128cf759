"""vigil.faust_tuning: the consumer's record hand-off without per-record tasks behaves like
mode's `wait_first` (delivered inline, or continued, or interrupted by the suspend event)."""

from __future__ import annotations

import asyncio

from faust.transport.consumer import Consumer

import vigil.faust_tuning as tuning


class FakeService:
    """What `Service.wait_first` reads from its service."""

    def __init__(self) -> None:
        self._stopped = asyncio.Event()
        self._crashed = asyncio.Event()
        self.loop = asyncio.get_running_loop()


async def test_override_is_installed_on_fausts_consumer() -> None:
    assert Consumer.wait_first is tuning._wait_first


async def test_a_delivery_that_does_not_suspend_runs_inline() -> None:
    delivered: list[int] = []

    async def deliver() -> int:
        delivered.append(1)
        return 7

    suspend = asyncio.Event()
    before = len(asyncio.all_tasks())
    result = await tuning._wait_first(FakeService(), deliver(), suspend.wait())
    assert delivered == [1]
    assert result.results == [7] and not result.stopped
    assert len(asyncio.all_tasks()) == before


async def test_a_delivery_that_suspends_is_continued_not_restarted() -> None:
    steps: list[str] = []
    room = asyncio.Event()

    async def deliver() -> str:
        steps.append("start")
        await room.wait()  # a full stream buffer
        steps.append("end")
        return "done"

    asyncio.get_running_loop().call_later(0.01, room.set)
    result = await tuning._wait_first(FakeService(), deliver(), asyncio.Event().wait())
    assert steps == ["start", "end"]
    assert result.results == ["done"]


async def test_a_suspended_delivery_is_interrupted_by_the_suspend_event() -> None:
    cancelled = asyncio.Event()

    async def deliver() -> None:
        try:
            await asyncio.Event().wait()  # never gets room
        except asyncio.CancelledError:
            cancelled.set()
            raise

    suspend = asyncio.Event()
    asyncio.get_running_loop().call_later(0.01, suspend.set)
    await tuning._wait_first(FakeService(), deliver(), suspend.wait())
    await asyncio.sleep(0)
    assert cancelled.is_set()


def test_lean_monitor_keeps_the_stream_time_fausts_stall_check_reads() -> None:
    """Regression: the lean monitor skipped `stream_inbound_time`, so faust's stall check logged
    "Stream has not started processing" for every busy partition after five minutes."""
    from faust.types import TP
    from prometheus_client import CollectorRegistry

    from agents.metrics import Metrics

    monitor = tuning.LeanPrometheusMonitor(
        metrics=Metrics(CollectorRegistry()).faust_metrics())
    tp = TP("forum.posts.v1", 3)
    assert tp not in monitor.stream_inbound_time
    monitor.on_stream_event_in(tp, 10, object(), object())
    assert monitor.stream_inbound_time[tp] > 0

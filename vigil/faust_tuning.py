"""faust overrides that are not settings: fetch wait, a lean sensor, cheaper record hand-off.

faust-streaming hard-codes aiokafka's `fetch_max_wait_ms=1500`. Apache Kafka answers a waiting
fetch as soon as data arrives, so there that only bounds idle polling. Tansu (the embedded broker)
does not: it holds every fetch for the full wait, so each hop of the pipeline added 0–1.5 s
(measured: a record produced into an idle consumer arrived after 483–1235 ms with 1500, 11–36 ms
with 100, 4–11 ms with 20). Vigil's setting `VIGIL_CONSUMER_FETCH_MAX_WAIT_MS` replaces it.

`LeanPrometheusMonitor` is faust's Prometheus sensor without its per-event bookkeeping.

`_drain_messages` hands each fetched record to the streams with
`await self.wait_first(callback(message), self.suspend_flow.wait())`, so that a rebalance can
interrupt a delivery blocked on a full stream buffer. mode's `wait_first` makes four tasks per
call (the callback, the suspend event, the service's stopped and crashed events), waits, and
cancels three: that is most of faust's "≈ 4 loop iterations per event". The callback almost
always finishes without suspending (the buffer has room), so the consumer below runs its first
step inline and only falls back to the stock `wait_first` — with the callback continued, not
restarted — when it does suspend: same behaviour, no tasks on the common path.
"""

from __future__ import annotations

import asyncio
from time import monotonic
from collections.abc import Coroutine, Generator
from typing import Any

from faust.sensors.prometheus import PrometheusMonitor
from faust.transport.consumer import Consumer as _FaustConsumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from mode.services import Service, WaitResults

_original = faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer
_fetch_max_wait_ms = 1500


def set_fetch_max_wait_ms(value: int) -> None:
    """Use `value` for every faust consumer created from now on in this process."""
    global _fetch_max_wait_ms
    _fetch_max_wait_ms = value


def _create_worker_consumer(self: Any, transport: Any) -> Any:
    consumer = _original(self, transport)
    consumer._fetch_max_wait_ms = _fetch_max_wait_ms  # noqa: SLF001 - read at consumer start
    return consumer


faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer  # type: ignore[method-assign]


class LeanPrometheusMonitor(PrometheusMonitor):
    """faust's `PrometheusMonitor` with cheap per-event hooks.

    faust calls four sensor hooks for every event (message in, stream event in/out, message
    out). The stock monitor does bookkeeping in each (timestamps, per-stream dicts, a regex on
    the stream's label, labelled-metric look-ups, a latency histogram observation): ≈ 10 % of a
    decide worker's CPU per event (bench/decide.py, docs/performance.md). Here only
    `faust_messages_received_total` and `faust_messages_received_per_topics_total{topic}` are
    kept per event (children cached); the per-event gauges and the event-runtime histogram
    (`faust_active_messages`, `faust_total_active_events`, `faust_total_events*`,
    `faust_events_runtime_ms`, `faust_messages_received_per_topics_partition`) stay registered
    but are not updated. Everything else — end and committed offsets (consumer lag),
    rebalances, commits, sends — is the stock monitor's, and the per-partition time of the last
    stream event, which faust's stall check needs.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._received_by_topic: dict[str, Any] = {}

    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        self._metrics.messages_received.inc()
        child = self._received_by_topic.get(tp.topic)
        if child is None:
            child = self._received_by_topic[tp.topic] = (
                self._metrics.messages_received_per_topics.labels(topic=tp.topic))
        child.inc()

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> None:
        # faust's stall check (`verify_event_path`) reads this: without it every partition
        # logged "Stream has not started processing" as an ERROR once a worker had run 5 min.
        self.stream_inbound_time[tp] = monotonic()

    def on_stream_event_out(self, tp: Any, offset: int, stream: Any, event: Any,
                            state: Any = None) -> None:
        return None

    def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
        return None


# -------------------------------------------------------------------------------------------
# Delivery of fetched records to streams without four tasks per record (see module docstring).


class _Continued:
    """Awaitable that continues a coroutine already advanced to its first suspension."""

    __slots__ = ("_coro", "_yielded")

    def __init__(self, coro: Coroutine[Any, Any, Any], yielded: Any) -> None:
        self._coro, self._yielded = coro, yielded

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, yielded = self._coro, self._yielded
        while True:
            try:
                sent = yield yielded
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # noqa: BLE001 - forwarded (cancellation included)
                try:
                    yielded = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    yielded = coro.send(sent)
                except StopIteration as stop:
                    return stop.value


async def _continue(coro: Coroutine[Any, Any, Any], yielded: Any) -> Any:
    return await _Continued(coro, yielded)


async def _wait_first(self: Any, *coros: Any, timeout: Any = None) -> WaitResults:
    # Only `_drain_messages`'s call has this shape: (callback coroutine, suspend_flow.wait()).
    if len(coros) == 2 and timeout is None and asyncio.iscoroutine(coros[0]):
        deliver, other = coros
        try:
            yielded = deliver.send(None)
        except BaseException as exc:
            if asyncio.iscoroutine(other):
                other.close()  # never started: no "never awaited" warning
            if isinstance(exc, StopIteration):  # delivered without suspending: the common case
                return WaitResults([deliver], [exc.value], False)
            raise
        coros = (_continue(deliver, yielded), other)
    return await Service.wait_first(self, *coros, timeout=timeout)


_FaustConsumer.wait_first = _wait_first  # type: ignore[assignment,method-assign]

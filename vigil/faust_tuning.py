"""The one faust knob that is not a setting: the consumer's fetch wait.

faust-streaming hard-codes aiokafka's `fetch_max_wait_ms=1500`. Apache Kafka answers a waiting
fetch as soon as data arrives, so there that only bounds idle polling. Tansu (the embedded broker)
does not: it holds every fetch for the full wait, so each hop of the pipeline added 0–1.5 s
(measured: a record produced into an idle consumer arrived after 483–1235 ms with 1500, 11–36 ms
with 100, 4–11 ms with 20). Vigil's setting `VIGIL_CONSUMER_FETCH_MAX_WAIT_MS` replaces it.
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka

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

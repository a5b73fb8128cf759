"""The evaluation through the real pipeline: embedded broker + `vigil worker --agents burst`.

One partition per topic (`VIGIL_TOPIC_PARTITIONS=1`, which the worker also gives the role's
internal by-board topic when it creates it; the pdq topic always has one): the in-process mode runs one detector
group per stream in order, and a single partition is what makes the worker see exactly that
order (it also makes the sentinels a proof of completion, `bench.burst_wire`). Scaling out by
partitions changes *where* windows are kept, not what a window contains, except for events
that arrive later than the allowed lateness on their own partition.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.burst_wire import Message, sentinels_seen
from bench.decide import load_average, worker_env
from bench.passthrough import cpu_seconds, load_embedded_broker
from streams.codec import decode
from streams.events import AlertData
from streams.topics import ALERTS
from tests.integration.helpers import start_vigil, wait_ready
from vigil.broker import ensure_topics

MIB = 1 << 20


@dataclass(frozen=True)
class PipelineRun:
    """Alerts read back (deduplicated by `alert_id`, in arrival order) and wall times."""

    alerts: list[AlertData]
    ready_s: float
    produce_s: float
    done_s: float  # from the first produced event to the last sentinel alert
    worker_cpu_s: float  # CPU the worker used for it (less noisy than wall time on a busy box)
    broker_cpu_s: float
    load: str  # load average when done


async def _produce(bootstrap: str, prefix: str, messages: list[Message]) -> float:
    started = time.monotonic()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=5,
                                max_batch_size=MIB, max_request_size=8 * MIB)
    await producer.start()
    try:
        pending = []
        for m in messages:  # not awaited one by one: ≈ 5k/s that way (DESIGN §1)
            pending.append(await producer.send(m.spec.full_name(prefix), m.value, key=m.key))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.monotonic() - started


async def _collect(bootstrap: str, topic: str, timeout: float) -> list[AlertData]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                fetch_max_wait_ms=200)
    await consumer.start()
    seen: dict[str, AlertData] = {}
    deadline = time.monotonic() + timeout
    try:
        while not sentinels_seen(list(seen.values())):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no sentinel alerts after {timeout:.0f} s "
                                   f"({len(seen)} alerts so far)")
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    alert = decode(ALERTS, record.value).data
                    seen.setdefault(alert.alert_id, alert)  # at-least-once: dedup by id
    finally:
        await consumer.stop()
    return list(seen.values())


async def run_pipeline(messages: list[Message], timeout: float = 1800.0) -> PipelineRun:
    """Start a broker and a burst worker, produce `messages`, return the alerts."""
    workdir = Path(tempfile.mkdtemp(prefix="vigil-burst-eval-"))
    broker = load_embedded_broker()(log_path=workdir / "broker.log").start()
    broker_pid: int = broker.pid
    worker = None
    try:
        prefix = f"be{uuid.uuid4().hex[:8]}."
        await ensure_topics(broker.bootstrap, prefix=prefix, partitions=1, replication=1)
        env = worker_env(broker.bootstrap, prefix, workdir)
        env.update(VIGIL_TOPIC_PARTITIONS="1", VIGIL_LOG_LEVEL="warn")
        spawned = time.monotonic()
        worker = start_vigil(["worker", "--agents", "burst"], env, workdir / prefix)
        await asyncio.to_thread(wait_ready, worker, 180.0)
        ready_s = time.monotonic() - spawned
        started = time.monotonic()
        cpu_before = cpu_seconds(worker.proc.pid), cpu_seconds(broker_pid)
        collecting = asyncio.create_task(
            _collect(broker.bootstrap, ALERTS.full_name(prefix), timeout))
        produce_s = await _produce(broker.bootstrap, prefix, messages)
        alerts = await collecting
        return PipelineRun(alerts, ready_s, produce_s, time.monotonic() - started,
                           cpu_seconds(worker.proc.pid) - cpu_before[0],
                           cpu_seconds(broker_pid) - cpu_before[1], load_average())
    except BaseException:
        if worker is not None:
            print(worker.log()[-3000:])
        raise
    finally:
        if worker is not None:
            worker.stop()
        broker.stop()

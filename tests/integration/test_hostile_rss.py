"""Every hostile input through a real worker (hashing + classify + decide, embedded broker):
answered, the worker alive, and its memory bounded by what an ordinary image costs.

The bound is a memory bound, not a time limit: each input's peak RSS growth (VmHWM after its
answer − VmRSS before it) must stay under `BOUND` × the peak growth of the benign yardstick (a
2000×1500 PNG) measured in the same worker. `bench.hostile` prints the same numbers over several
rounds (docs/performance.md): the worst hostile input measured ≈ 1× the benign image (the
10 MB post), every image attack ≤ 0.1×. The bound does fail when a limit gives way: with
`VIGIL_IMAGE_MAX_PIXELS` raised to 200 M, hashing decodes a 12 000² 1-bit bomb PNG and the worker
peaks 822 MB above its start, 20.6× the benign image (measured once, 2026-11-25).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from streams.topics import DEADLETTER, VERDICTS
from tests.integration.helpers import Worker, running, topic, unique_prefix, vigil_env
from tests.integration.hostile_inputs import (
    BENIGN,
    MAX_REQUEST,
    URL_ALLOWLIST,
    Answers,
    cases,
    listen,
    measure,
    warm_up,
)
from vigil.broker import EmbeddedBroker

pytestmark = pytest.mark.integration

#: Generous: the measured worst case is ≈ 1× (see the module docstring).
BOUND = 3.0
#: Images the pipeline cannot check are held (fail closed), never allowed.
HELD = {"decompression-bomb", "truncated-jpeg", "zero-bytes", "wrong-content-type",
        "url-metadata-ip", "url-loopback", "url-private"}


@pytest.fixture(scope="module")
def worker(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    data_dir: Path = tmp_path_factory.mktemp("vigil")
    env = vigil_env(broker.url, unique_prefix(), data_dir, VIGIL_DECIDE_DEADLINE_MS="30000",
                     VIGIL_IMAGE_URL_ALLOWLIST=URL_ALLOWLIST)
    with running(["worker", "--agents", "intake,hashing,classify,decide"], env,
                 data_dir) as worker:
        yield worker


@pytest.fixture
async def answered(worker: Worker, broker: EmbeddedBroker
                   ) -> AsyncIterator[tuple[AIOKafkaProducer, Answers]]:
    """A producer and the answers (verdicts, dead letters) read as they arrive."""
    answers = Answers()
    listener = asyncio.create_task(listen(
        broker.bootstrap, [topic(worker, VERDICTS), topic(worker, DEADLETTER)], answers))
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all",
                                max_request_size=MAX_REQUEST)
    await producer.start()
    try:
        await warm_up(worker, producer, answers, listener)
        yield producer, answers
    finally:
        listener.cancel()
        await producer.stop()


async def test_every_hostile_input_is_answered_within_a_memory_bound(
    worker: Worker, answered: tuple[AIOKafkaProducer, Answers]
) -> None:
    producer, answers = answered
    measured = {case.name: await measure(worker, producer, answers, case, timeout=120.0)
                for case in cases("-rss")}
    table = "\n".join(f"{name}: peak +{m.peak:.1f} MB, {m.answer}"
                      for name, m in measured.items())
    assert worker.proc.poll() is None, f"worker died:\n{table}\n{worker.log()[-3000:]}"
    benign = measured.pop(BENIGN)
    assert benign.answer.startswith("allow"), table
    assert benign.peak > 1.0, f"the yardstick must cost memory to be one:\n{table}"
    for name, m in measured.items():
        assert m.answer != "no answer", f"{name} got no verdict or dead letter:\n{table}"
        if name in HELD:
            assert m.answer.startswith("hold"), f"{name} must be held:\n{table}"
        assert m.peak <= BOUND * benign.peak, f"{name} over {BOUND}× benign:\n{table}"

"""What an output record costs the producing process: aiokafka's per-record `send` vs
`agents.batches.queue` (one record batch per topic-partition), and aiokafka's murmur2 vs
`vigil.partitioner`'s — each a ratio against the other, measured in the same run.

Records are ≈ 400 B with keys shaped like Vigil's (`sig-intake-post-<id>`), 500 per outbox
flush as the hot agents send them, on an embedded broker with 6 partitions; the figure is this
process's CPU time (user + system) per delivered record, which a shared box disturbs far less
than wall time. Rounds alternate the two ways so that load drifts hit both.

    PYTHONPATH=. .venv/bin/python -m bench.produce [--records 30000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import timeit

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2

from agents.batches import queue
from bench.passthrough import create_topics, load_embedded_broker
from vigil.partitioner import Murmur2Partitioner, murmur2

FLUSH = 500
PARTITIONS = 6


async def per_record(producer: AIOKafkaProducer, records: list[tuple[str, bytes, bytes]]) -> float:
    started = time.process_time()
    for i in range(0, len(records), FLUSH):
        futures = [await producer.send(t, v, key=k) for t, k, v in records[i:i + FLUSH]]
        await asyncio.gather(*futures)
    return (time.process_time() - started) / len(records)


async def batched(producer: AIOKafkaProducer, records: list[tuple[str, bytes, bytes]]) -> float:
    started = time.process_time()
    for i in range(0, len(records), FLUSH):
        queued, rest, error = await queue(producer, records[i:i + FLUSH])
        assert not rest and error is None, error
        await asyncio.gather(*(q.future for q in queued))
    return (time.process_time() - started) / len(records)


def partitioners(keys: list[bytes]) -> tuple[float, float]:
    """Seconds per key: aiokafka's DefaultPartitioner, then Vigil's."""
    parts = list(range(PARTITIONS))
    theirs, ours = DefaultPartitioner(), Murmur2Partitioner()
    assert all(aiokafka_murmur2(k) == murmur2(k) for k in keys)
    a = min(timeit.repeat(lambda: [theirs(k, parts, parts) for k in keys], number=3, repeat=5))
    b = min(timeit.repeat(lambda: [ours(k, parts, parts) for k in keys], number=3, repeat=5))
    return a / (3 * len(keys)), b / (3 * len(keys))


async def main_async(args: argparse.Namespace) -> None:
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (2 cores)")
    broker = load_embedded_broker()().start()
    try:
        topic = "bench-produce"
        await create_topics(broker.bootstrap, [topic], PARTITIONS)
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all",
                                    max_batch_size=512 * 1024)
        vigils = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all",
                                  max_batch_size=512 * 1024, partitioner=Murmur2Partitioner())
        await producer.start()
        await vigils.start()
        records = [(topic, f"sig-intake-post-ld{i:07d}".encode(), os.urandom(400))
                   for i in range(args.records)]
        try:
            await per_record(producer, records[:FLUSH * 4])  # warm-up: metadata, connections
            await batched(producer, records[:FLUSH * 4])
            await batched(vigils, records[:FLUSH * 4])
            sends, queues, both = [], [], []
            for n in range(args.rounds):
                sends.append(await per_record(producer, records))
                queues.append(await batched(producer, records))
                both.append(await batched(vigils, records))
                print(f"round {n + 1}: per-record send {sends[-1] * 1e6:.1f} us CPU per record, "
                      f"batches.queue {queues[-1] * 1e6:.1f} us, with vigil.partitioner "
                      f"{both[-1] * 1e6:.1f} us", flush=True)
        finally:
            await producer.stop()
            await vigils.stop()
    finally:
        broker.stop()
    theirs, ours = partitioners([k for _, k, _ in records[:5000]])
    s, q, b = statistics.median(sends), statistics.median(queues), statistics.median(both)
    print(f"\nproduce, CPU per record (median of {args.rounds}): per-record send {s * 1e6:.1f} us, "
          f"batches.queue {q * 1e6:.1f} us = {q / s:.2f}x, batches.queue with vigil.partitioner "
          f"{b * 1e6:.1f} us = {b / s:.2f}x (what Vigil's outbox does)")
    print(f"partitioner per key: aiokafka {theirs * 1e6:.2f} us, vigil.partitioner "
          f"{ours * 1e6:.2f} us = {ours / theirs:.2f}x")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.produce",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=30_000)
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()

"""Why the embedded broker slows down under constant input: its CPU per fetch grows with the
record batches stored in the partition (issue 9).

Tansu 0.6's memory storage (`DynoStore` over an in-memory object store) keeps each produced
record batch as one object, and its `fetch` lists *every* batch object of the partition to find
the ones at or after the fetch offset, whenever the offset is below the high watermark — that
is, on every fetch that returns data. A fetch at the end of the partition (nothing new) skips
the listing. So the broker's CPU grows with (fetches that return data per second) × (batches
stored per partition), and the batches stored only grow: Tansu ignores retention and does not
implement DeleteRecords. A producer that sends one record per request (a forum posting as
users post, or linger 0 at low rates) stores one batch per record.

Each case starts a fresh embedded broker, creates one topic (`--partitions`, 6), produces
`--rate` records/s (400 B, keyed, aiokafka) for `--seconds` and prints the broker's CPU (share
of one core, from /proc) per `--every` s window, and the last window ÷ the first:

* `produce only` — nobody reads;
* `tail, 1-record batches` — one group-less aiokafka consumer reads everything as it comes,
  with Vigil's fetch wait (50 ms, `VIGIL_CONSUMER_FETCH_MAX_WAIT_MS`); linger 0;
* `tail, lingered batches` — the same, the producer lingering `--linger-ms` (100) so each
  request carries several records: fewer, larger batches;
* `tail, long fetch wait` — 1-record batches, the consumer waiting 500 ms per fetch: fewer
  fetches that return data;
* `vigil worker --agents intake` (`--vigil-agents`, empty to skip) — Vigil instead of the bench
  consumer: the events are valid posts, read by intake's consumer group, and intake writes one
  signal per post.

Run from the repository root (≈ 4 min)::

    PYTHONPATH=. .venv/bin/python -m bench.broker_fetch [--rate 150] [--seconds 40]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.decide import load_average, worker_env
from bench.load import Traffic
from bench.passthrough import cpu_seconds, load_embedded_broker
from tests.integration.helpers import start_vigil, wait_ready
from vigil.broker import ensure_topics


@dataclass(frozen=True)
class Case:
    name: str
    linger_ms: int = 0
    fetch_wait_ms: int | None = 50  # None: no bench consumer
    vigil: bool = False


async def _tail(bootstrap: str, topic: str, partitions: int, wait_ms: int) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, fetch_max_wait_ms=wait_ms)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        while True:
            await consumer.getmany(timeout_ms=100)
    finally:
        await consumer.stop()


async def run_case(case: Case, args: argparse.Namespace) -> list[float]:
    """The broker's CPU share per window of the case."""
    broker = load_embedded_broker()().start()
    bootstrap = broker.bootstrap
    worker = None
    tasks: list[asyncio.Task[None]] = []
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=case.linger_ms)
    try:
        if case.vigil:
            prefix = f"bf{uuid.uuid4().hex[:8]}."
            await ensure_topics(bootstrap, prefix=prefix, partitions=args.partitions,
                                replication=1)
            workdir = Path(tempfile.mkdtemp(prefix="vigil-bench-broker-fetch-"))
            env = worker_env(bootstrap, prefix, workdir)
            env["VIGIL_TOPIC_PARTITIONS"] = str(args.partitions)
            worker = start_vigil(["worker", "--agents", args.vigil_agents], env, workdir / "v")
            await asyncio.to_thread(wait_ready, worker, 120.0)
            await producer.start()
            traffic = Traffic(producer, prefix)
            send: Callable[[], Awaitable[object]] = lambda: traffic.send("run", kind="post")
        else:
            admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
            await admin.start()
            try:
                await admin.create_topics([NewTopic("t", args.partitions, 1)])
            finally:
                await admin.close()
            await producer.start()
            if case.fetch_wait_ms is not None:
                tasks.append(asyncio.create_task(
                    _tail(bootstrap, "t", args.partitions, case.fetch_wait_ms)))
            n = 0

            async def send_one() -> None:
                nonlocal n
                n += 1
                await producer.send("t", b"x" * 400, key=str(n).encode())

            send = send_one
        await asyncio.sleep(2.0)
        assert broker.pid is not None
        shares: list[float] = []
        started = last_t = time.monotonic()
        last_cpu, sent = cpu_seconds(broker.pid), 0
        while (elapsed := time.monotonic() - started) < args.seconds:
            due = int(elapsed * args.rate) + 1 - sent
            for _ in range(max(due, 0)):
                await send()
            sent += max(due, 0)
            await asyncio.sleep(0.005)
            if time.monotonic() - last_t >= args.every:
                now, cpu = time.monotonic(), cpu_seconds(broker.pid)
                shares.append((cpu - last_cpu) / (now - last_t))
                last_t, last_cpu = now, cpu
        return shares
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await producer.stop()
        if worker is not None:
            worker.stop()
        broker.stop()


async def main_async(args: argparse.Namespace) -> None:
    cases = [Case("produce only", fetch_wait_ms=None),
             Case("tail, 1-record batches, 50 ms fetch wait"),
             Case(f"tail, lingered batches ({args.linger_ms} ms), 50 ms fetch wait",
                  linger_ms=args.linger_ms),
             Case("tail, 1-record batches, 500 ms fetch wait", fetch_wait_ms=500)]
    if args.vigil_agents:
        cases.append(Case(f"vigil worker --agents {args.vigil_agents} (posts)",
                          fetch_wait_ms=None, vigil=True))
    print(f"load average at start: {load_average()} (2 cores); {args.rate:g} records/s over "
          f"{args.partitions} partitions for {args.seconds:g} s per case", flush=True)
    rows = []
    for case in cases:
        shares = await run_case(case, args)
        rows.append((case, shares))
        print(f"  {case.name}: broker CPU per {args.every:g} s: "
              + " ".join(f"{s:.0%}" for s in shares), flush=True)
    print(f"\n== broker CPU (share of one core) under constant input, embedded Tansu ==")
    print(f"load average at the end: {load_average()} (2 cores)")
    for case, shares in rows:
        if len(shares) >= 2:
            print(f"  {case.name:<52} first {shares[0]:4.0%}  last {shares[-1]:4.0%}  "
                  f"last/first {shares[-1] / max(shares[0], 1e-9):.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.broker_fetch",
                                     description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=150.0, help="records/s")
    parser.add_argument("--seconds", type=float, default=40.0, help="per case")
    parser.add_argument("--every", type=float, default=10.0, help="CPU window (s)")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--linger-ms", type=int, default=100)
    parser.add_argument("--vigil-agents", default="intake",
                        help="a Vigil worker's roles for the last case (empty: skip it)")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()

"""Decide throughput vs the default faust pass-through and the aiokafka ceiling; post → verdict
latency at half the measured maximum rate.

Same method as `bench.passthrough` (whose helpers and cases this reuses), on one embedded broker:

* **baseline** / **ceiling**: `bench.passthrough`'s default faust pass-through and batched
  aiokafka loop, run here so the ratios compare like with like;
* **decide**: a real `vigil worker --agents decide` reading a pre-filled `safety.signals.v1`
  of N `intake` signals for posts, under a copy of the default policy whose `[required] post`
  is empty, so every signal is one decision (policy evaluated, verdict signed) — decisions/s
  counted as verdicts arriving, first fetch excluded;
* **decide, default policy**: the shipped policy requires `text_abuse` for posts, so each post
  is an `intake` and a `text_abuse` signal (score 0.01 → `allow`): two signals per decision;
  decisions/s and signals/s are both reported;
* **latency**: `vigil worker --agents intake` and `vigil worker --agents decide` (bench policy;
  `--latency-workers one` runs both in one process); posts produced to `forum.posts.v1` at half
  the decide rate for `--latency-seconds`; latency = verdict arrival −
  produce time, per post; the broker's own produce → consume round trip (one record at a time,
  aiokafka, same fetch wait as Vigil) is measured alongside as the yardstick of issue 9.

The measured workers run with `VIGIL_CONSOLE_ENABLED=false`: the console's feed (a consumer of
verdicts writing SQLite) is not part of decide and otherwise runs in every worker process.
Each throughput case runs `--repeat` times (best reported, all printed); the worker's CPU time
per decision (user + sys over the measured window) is printed too, since it varies less than
rates on a shared box. The load average is printed at the start and the end.

    PYTHONPATH=. .venv/bin/python -m bench.decide [--events N] [--repeat R]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.passthrough import (
    BIG_PRODUCER_BATCH,
    CASES_BY_NAME,
    REPO_ROOT,
    cpu_seconds,
    load_embedded_broker,
    run_case,
)
from streams.codec import encode
from streams.events import SignalData
from streams.topics import POSTS, SIGNALS, VERDICTS
from vigil.broker import ensure_topics, free_port


def worker_env(bootstrap: str, prefix: str, workdir: Path,
               policy: Path | None = None) -> dict[str, str]:
    (workdir / prefix).mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env.update(VIGIL_BROKER=f"kafka://{bootstrap}", VIGIL_TOPIC_PREFIX=prefix,
               VIGIL_DATA_DIR=str(workdir / prefix), VIGIL_WEB_PORT=str(free_port()),
               VIGIL_SIGNING_KEY="bench", VIGIL_SIGNING_KEY_ID="bench",
               VIGIL_CONSOLE_ENABLED="false", PYTHONPATH=str(REPO_ROOT))
    if policy is not None:
        env["VIGIL_POLICY"] = str(policy)
    return env


def bench_policy(workdir: Path) -> Path:
    """The default policy with no detector required for posts: one signal, one decision."""
    import agents.policy

    text = (Path(agents.policy.__file__).parent / "default.toml").read_text()
    text, n = re.subn(r"(?m)^post = \[.*?\]", "post = []", text, count=1)
    text, m = re.subn(r'(?m)^version = "(.*?)"', r'version = "\1-bench"', text, count=1)
    if not (n and m):
        raise RuntimeError("default.toml changed shape: update bench_policy()")
    path = workdir / "bench-policy.toml"
    path.write_text(text)
    return path


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def start_worker(agents: str, env: dict[str, str], workdir: Path) -> subprocess.Popen[bytes]:
    log = open(workdir / f"{agents}.log", "wb")  # noqa: SIM115
    return subprocess.Popen([sys.executable, "-m", "vigil.cli", "worker", "--agents", agents],  # noqa: S603
                            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def consumer_for(bootstrap: str, topic: str, partitions: int) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                group_id=None, fetch_max_wait_ms=50,
                                max_partition_fetch_bytes=8 * 1024 * 1024)
    await consumer.start()
    consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
    await consumer.seek_to_beginning()
    return consumer


@dataclass
class DecideRun:
    decisions_per_s: float
    signals_per_s: float
    startup_s: float
    cpu_us_per_decision: float


async def decide_rate(bootstrap: str, events: int, partitions: int, workdir: Path,
                      policy: Path | None) -> DecideRun:
    """A decide worker over `events` pre-filled posts' signals.

    With `policy` (the bench policy) each post is one `intake` signal; without it (the shipped
    default, which requires `text_abuse` for posts) each post is `intake` + `text_abuse`.
    """
    prefix = f"bd{uuid.uuid4().hex[:8]}."
    await ensure_topics(bootstrap, prefix=prefix, partitions=partitions, replication=1)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_batch_size=BIG_PRODUCER_BATCH,
                                linger_ms=10)
    await producer.start()
    per_post = 1 if policy is not None else 2
    for i in range(events):
        common = dict(content_type="post", content_id=f"p{i}", post_id=f"p{i}",
                      thread_id=f"t{i % 97}", author_id="u1")
        key, value = encode(SIGNALS, SignalData(
            detector="intake", detector_version="intake-1", **common,  # type: ignore[arg-type]
            evidence={"event_time": "2025-02-04T12:13:05+00:00",
                      "received_ms": int(time.time() * 1000)}), source="bench")
        await producer.send(SIGNALS.full_name(prefix), value, key=key)
        if per_post == 2:
            key, value = encode(SIGNALS, SignalData(
                detector="text_abuse", detector_version="bench-1", **common,  # type: ignore[arg-type]
                score=0.01, model="bench@1"), source="bench")
            await producer.send(SIGNALS.full_name(prefix), value, key=key)
    await producer.stop()
    consumer = await consumer_for(bootstrap, VERDICTS.full_name(prefix), partitions)
    spawned = time.monotonic()
    proc = start_worker("decide", worker_env(bootstrap, prefix, workdir, policy), workdir)
    seen = first_fetch = 0
    first = last = cpu_first = cpu_last = 0.0
    try:
        deadline = spawned + 300
        while seen < events and time.monotonic() < deadline and proc.poll() is None:
            batch = await consumer.getmany(timeout_ms=200, max_records=100_000)
            n = sum(len(v) for v in batch.values())
            if n and not seen:
                first, first_fetch, cpu_first = time.monotonic(), n, cpu_seconds(proc.pid)
            if n:
                last, cpu_last = time.monotonic(), cpu_seconds(proc.pid)
            seen += n
    finally:
        await consumer.stop()
        stop(proc)
    if seen < events:
        raise RuntimeError(f"decide produced {seen}/{events} verdicts; see {workdir}")
    counted = seen - first_fetch
    rate = counted / (last - first)
    return DecideRun(rate, rate * per_post, first - spawned,
                     (cpu_last - cpu_first) / counted * 1e6)


async def round_trip(bootstrap: str, samples: int = 200) -> list[float]:
    """The broker's produce → consume round trip (s), one record at a time, no batching.

    aiokafka with the fetch wait Vigil uses (50 ms): the yardstick for issue 9's latency target.
    """
    topic = f"rt{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await producer.start()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                fetch_max_wait_ms=50, enable_auto_commit=False)
    await consumer.start()
    consumer.assign([TopicPartition(topic, 0)])
    await consumer.seek_to_end()
    times: list[float] = []
    try:
        for i in range(samples):
            sent = time.monotonic()
            await producer.send(topic, str(i).encode(), partition=0)
            while True:
                batch = await consumer.getmany(timeout_ms=1000)
                if any(r.value == str(i).encode() for rs in batch.values() for r in rs):
                    times.append(time.monotonic() - sent)
                    break
    finally:
        await consumer.stop()
        await producer.stop()
    return times


async def latency(bootstrap: str, rate: float, seconds: float, partitions: int,
                  workdir: Path, policy: Path | None, separate: bool = True) -> list[float]:
    """Post → verdict latencies (s) with posts produced at `rate`/s through intake + decide.

    `separate`: intake and decide in two worker processes (one core each on a 2-core box),
    else both in one.
    """
    prefix = f"bl{uuid.uuid4().hex[:8]}."
    await ensure_topics(bootstrap, prefix=prefix, partitions=partitions, replication=1)
    roles = ["intake", "decide"] if separate else ["intake,decide"]
    procs = []
    for role in roles:
        (workdir / prefix / role).mkdir(parents=True)
        procs.append(start_worker(role, {**worker_env(bootstrap, prefix, workdir, policy),
                                         "VIGIL_DATA_DIR": str(workdir / prefix / role)},
                                  workdir))
    consumer = await consumer_for(bootstrap, VERDICTS.full_name(prefix), partitions)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await producer.start()
    sent: dict[str, float] = {}
    latencies: list[float] = []
    warmed = asyncio.Event()

    async def read() -> None:
        while True:
            batch = await consumer.getmany(timeout_ms=100)
            now = time.monotonic()
            for records in batch.values():
                for record in records:
                    post = orjson.loads(record.value)["data"]["content_id"]
                    if post.startswith("warm"):
                        warmed.set()
                    elif post in sent:
                        latencies.append(now - sent[post])

    reader = asyncio.create_task(read())
    try:
        warm = 0  # until the worker has joined its group and answers
        while not warmed.is_set() and warm < 1200:
            await producer.send(POSTS.full_name(prefix), _post(f"warm{warm}"), key=b"t")
            warm += 1
            await asyncio.sleep(0.1)
        await asyncio.sleep(2)
        latencies.clear()
        interval, started, i = 1 / rate, time.monotonic(), 0
        while time.monotonic() - started < seconds:
            target = started + i * interval
            if target > time.monotonic():
                await asyncio.sleep(target - time.monotonic())
            pid = f"p{i}"
            sent[pid] = time.monotonic()
            await producer.send(POSTS.full_name(prefix), _post(pid), key=f"t{i % 97}".encode())
            i += 1
        expected = i
        deadline = time.monotonic() + 30
        while len(latencies) < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
    finally:
        reader.cancel()
        await producer.stop()
        await consumer.stop()
        for proc in procs:
            stop(proc)
    if not latencies:
        raise RuntimeError(f"no verdicts in the latency run; see the logs in {workdir}")
    return latencies


def _post(post_id: str) -> bytes:
    return orjson.dumps({
        "specversion": "1.0", "id": f"evt-{post_id}-{uuid.uuid4().hex[:6]}",
        "source": "forum/bench", "type": "forum.post.created", "time": "2025-02-04T12:13:05Z",
        "data": {"post_id": post_id, "thread_id": "t1", "author": {"id": "u1"},
                 "body": "lorem ipsum " * 60}})


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) >= 2 else float("nan")


async def main_async(args: argparse.Namespace) -> None:
    load_start = load_average()
    broker = load_embedded_broker()().start()
    try:
        bootstrap = broker.bootstrap
        with tempfile.TemporaryDirectory(prefix="vigil-bench-decide-") as tmp:
            workdir = Path(tmp)
            policy = bench_policy(workdir)
            pt_args = argparse.Namespace(events=args.events, size=1024,
                                         partitions=args.partitions, startup_cap=90.0)
            baselines, fast, default = [], [], []
            for _ in range(args.repeat):  # interleaved, so load drifts hit every case alike
                baselines.append(
                    await run_case(CASES_BY_NAME["baseline"], bootstrap, pt_args, workdir))
                fast.append(await decide_rate(bootstrap, args.events, args.partitions, workdir,
                                              policy))
                default.append(await decide_rate(bootstrap, args.events, args.partitions,
                                                 workdir, None))
            ceiling = await run_case(CASES_BY_NAME["ceiling"], bootstrap, pt_args, workdir)
            best = max(fast, key=lambda r: r.decisions_per_s)
            separate = args.latency_workers == "separate"
            lat = await latency(bootstrap, best.decisions_per_s / 2, args.latency_seconds,
                                args.partitions, workdir, policy, separate=separate)
            lat4 = await latency(bootstrap, best.decisions_per_s / 4, args.latency_seconds,
                                 args.partitions, workdir, policy, separate=separate)
            rtt = await round_trip(bootstrap)
    finally:
        broker.stop()
    base_rates = [b.rate or float("nan") for b in baselines]
    base, ceil = max(base_rates), ceiling.rate or float("nan")
    best_default = max(default, key=lambda r: r.decisions_per_s)

    def runs(values: list[float]) -> str:
        return "/".join(f"{v:,.0f}" for v in values)

    print(f"load average at start: {load_start}; at end: {load_average()} (2 cores)")
    print(f"events per throughput case: {args.events}, partitions: {args.partitions}, "
          f"runs per case: {args.repeat} (best shown; all in brackets)")
    print("| case | events/s | vs baseline | worker CPU µs/decision |\n|---|---:|---:|---:|")
    print(f"| faust default pass-through (baseline) | {base:,.0f} [{runs(base_rates)}] | 1.0× | |")
    print(f"| decide, 1 signal per post (bench policy) | {best.decisions_per_s:,.0f} "
          f"[{runs([r.decisions_per_s for r in fast])}] | {best.decisions_per_s / base:.1f}× | "
          f"{min(r.cpu_us_per_decision for r in fast):.0f} |")
    print(f"| decide, default policy: decisions (intake + text_abuse per post) | "
          f"{best_default.decisions_per_s:,.0f} [{runs([r.decisions_per_s for r in default])}] "
          f"| {best_default.decisions_per_s / base:.1f}× | "
          f"{min(r.cpu_us_per_decision for r in default):.0f} |")
    print(f"| decide, default policy: signals consumed | {best_default.signals_per_s:,.0f} | "
          f"{best_default.signals_per_s / base:.1f}× | |")
    print(f"| aiokafka batched loop (ceiling) | {ceil:,.0f} | {ceil / base:.1f}× | |")
    print(f"decide at {best.decisions_per_s / ceil:.0%} of the aiokafka ceiling; "
          f"worker start-up {best.startup_s:.1f} s")
    where = ("two workers" if args.latency_workers == "separate" else "one worker")
    for share, values in (("half", lat), ("a quarter", lat4)):
        print(f"post → verdict latency (intake + decide, {where}) at "
              f"{best.decisions_per_s * (0.5 if share == 'half' else 0.25):,.0f} posts/s "
              f"({share} of max) over {len(values)} posts: "
              f"p50 {pct(values, 50) * 1000:.0f} ms, p99 {pct(values, 99) * 1000:.0f} ms")
    print(f"broker produce → consume round trip: p50 {pct(rtt, 50) * 1000:.1f} ms, "
          f"p99 {pct(rtt, 99) * 1000:.1f} ms; post → verdict p99 at half of max = "
          f"{pct(lat, 99) / pct(rtt, 50):.1f}× the round trip's p50 "
          f"({pct(lat4, 99) / pct(rtt, 50):.1f}× at a quarter)")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.decide",
                                     description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=2, help="runs per throughput case")
    parser.add_argument("--latency-workers", choices=["separate", "one"], default="separate",
                        help="intake and decide in two worker processes (default) or in one")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()

"""Pass-through throughput on one broker: default faust, tuned faust, and a batched aiokafka loop.

Why: Vigil's throughput goals are stated as *ratios* ("the agents must keep up at ≥ k× what a
default faust agent does", "within x of what the client library can do") because absolute
numbers swing with the box and the broker. This benchmark measures both ends of that scale in
one run, on one embedded broker, with the same events, so the ratios are comparable:

* **baseline** — a default `faust.App` (only what is needed to connect; web disabled, memory
  store) whose agent reads topic A and `await dst.send(value)`s each value to topic B. Values go
  through faust's default `json` codec (which uses orjson when installed, as here).
* **faust-tuned-*** — the same pass-through with Vigil's tuned settings
  (`consumer_max_fetch_size` 8 MiB, `broker_max_poll_records` 10 000, session/rebalance
  timeouts 6 s, heartbeat 1 s), batching with `stream.take(500, within=0.05)`, raw values
  decoded and re-encoded with orjson, and three ways of sending (see `CASES`): awaiting each
  send, enqueueing a batch and awaiting its delivery once, and `send_soon` (never awaited). One
  variant also enlarges the producer batches, which faust keeps at 16 KB by default. The tuned
  workers also drop faust's terminal spinner, which otherwise sets the root logger to DEBUG.
* **ceiling** — a hand-written aiokafka loop: `getmany(max_records=10 000)` → orjson decode and
  encode → `producer.send()` without awaiting delivery (flush at the end). It does the same work
  per event as the tuned agents, without faust's per-event machinery.

Method: each case gets fresh topics and a fresh consumer group. Topic A is pre-filled with N
CloudEvents-like JSON events (≈ `--size` bytes each) by a batched aiokafka producer *before* the
worker starts, so the measure is pure consume → produce. Each worker runs in its own subprocess
(faust's `Worker` owns the event loop; it also isolates the cases). Arrivals on B are counted by
a plain aiokafka consumer in this (parent) process, assigned to all partitions without a group.
Throughput is measured from the first to the last arrival on B; the records that came in the
first fetch only mark the start and are left out of the rate (with fast cases a single fetch can
hold thousands of records, which would otherwise inflate the rate). Each faust case runs once
by default (`--repeat`), the ceiling three times (`--ceiling-repeat`: its window is under a
second), and the best run is reported, since noise on a shared box only slows runs down. The
time from spawning a worker to its first event on B is its start-up time; it includes the
interpreter and imports (reported separately), and for faust it is dominated by the
consumer-group join, which is what the default 60 s session/rebalance timeouts slow down on this
broker (DESIGN §1). We count arrivals instead of reading end offsets because Tansu's
ListOffsets(latest) may trail by a few records.

What we found (2-core box, Tansu, 20 000 × 1 KB, 6 partitions): baseline ≈ 3.1–3.7k/s; tuned
faust awaiting sends ≈ 1.0–1.2×, with `send_soon` or 512 KiB producer batches ≈ 1.5–1.7×; the
aiokafka loop ≈ 17–21× (≈ 60k/s, but over a window of only ≈ 0.3 s). A profile of a
tuned worker shows it CPU-bound in the event loop (≈ 4 loop iterations and ≈ 20 callbacks per
event through conductor → stream → take → send), with produce requests of 1–2 records even
with a 5 ms linger: faust's per-event machinery, not fetch sizes or the producer, is the
pass-through limit. Hot paths that must go faster than that need batched aiokafka code.

Run from the repository root::

    PYTHONPATH=. .venv/bin/python -m bench.passthrough [--events N] [--size BYTES]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

REPO_ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024
# Under aiokafka's and faust's default max request size (≈ 1 MB): a batch must fit one request.
BIG_PRODUCER_BATCH = 512 * 1024
TAKE_MAX = 500
TAKE_WITHIN = 0.05

SendMode = Literal["await", "batch", "soon"]
Kind = Literal["faust", "aiokafka"]

# Vigil's tuned faust settings (DESIGN §1): the defaults fetch too little per poll, and the
# 60 s session/rebalance timeouts make the group join take ≈ 30 s on the embedded broker.
TUNED_FAUST_SETTINGS: dict[str, Any] = {
    "consumer_max_fetch_size": 8 * MIB,
    "broker_max_poll_records": 10_000,
    "broker_session_timeout": 6.0,
    "broker_rebalance_timeout": 6.0,
    "broker_heartbeat_interval": 1.0,
}
BIG_PRODUCER_SETTINGS: dict[str, Any] = {
    "producer_max_batch_size": BIG_PRODUCER_BATCH,
    "producer_linger": 0.005,
}


@dataclass(frozen=True)
class Case:
    """One way of moving events from topic A to topic B."""

    name: str
    kind: Kind
    note: str
    tuned: bool = False  # TUNED_FAUST_SETTINGS + stream.take() batching + orjson on raw bytes
    send: SendMode = "await"
    big_producer_batches: bool = False


CASES: tuple[Case, ...] = (
    Case("baseline", "faust", "faust defaults; await dst.send(v) per event"),
    Case(
        "faust-tuned-await",
        "faust",
        "tuned; take(500, 0.05); await dst.send(v) per event",
        tuned=True,
        send="await",
    ),
    Case(
        "faust-tuned-batch",
        "faust",
        "tuned; take; enqueue all, await deliveries once per batch",
        tuned=True,
        send="batch",
    ),
    Case(
        "faust-tuned-soon",
        "faust",
        "tuned; take; dst.send_soon(v), never awaited",
        tuned=True,
        send="soon",
    ),
    Case(
        "faust-tuned-batch-bigprod",
        "faust",
        "as tuned-batch + producer batch 512 KiB, linger 5 ms",
        tuned=True,
        send="batch",
        big_producer_batches=True,
    ),
    Case(
        "ceiling",
        "aiokafka",
        "aiokafka getmany(10k) -> orjson -> send, flush at end",
    ),
)
CASES_BY_NAME = {case.name: case for case in CASES}


@dataclass
class Result:
    """What the parent saw on topic B for one case."""

    case: Case
    events: int  # arrivals counted on B
    seconds: float | None  # first → last arrival
    rate: float | None  # events/s, records of the first fetch excluded (see module docstring)
    startup: float | None  # worker spawn → first arrival on B
    stop: float | None  # SIGTERM → worker exit (faust shuts down gracefully)
    problem: str = ""
    #: The worker's CPU seconds per event over the same window as `rate` (first → last
    #: arrival): what a loaded box disturbs far less than the rate.
    cpu_per_event: float | None = None
    rates: tuple[float | None, ...] = ()  # every repetition's rate, when the case was repeated


# --------------------------------------------------------------------------------------------
# Events


def make_event(index: int, size: int) -> tuple[bytes, bytes]:
    """A `forum.post.created` CloudEvent padded to about `size` bytes, and its key (thread)."""
    thread_id = f"t{index % 97}"
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": f"evt-{index:012d}",
        "source": "forum/bench",
        "type": "forum.post.created",
        "time": "2025-02-04T02:13:05Z",
        "datacontenttype": "application/json",
        "data": {
            "post_id": f"p{index}",
            "thread_id": thread_id,
            "board": "general",
            "author": {"id": f"u{index % 1000}", "created_at": "2024-01-01T00:00:00Z"},
            "body": "",
            "image_ids": [],
            "created_at": "2025-02-04T02:13:05Z",
        },
    }
    padding = max(0, size - len(orjson.dumps(event)))
    event["data"]["body"] = ("lorem ipsum dolor sit amet " * (padding // 27 + 1))[:padding]
    return orjson.dumps(event), thread_id.encode()


def recode(value: bytes) -> bytes:
    """Decode and re-encode one event: the minimum work any real agent does per event."""
    return orjson.dumps(orjson.loads(value))


# --------------------------------------------------------------------------------------------
# Worker side (runs in a subprocess: `--worker CASE`)


def run_faust_worker(
    case: Case, broker_url: str, src: str, dst: str, group: str, datadir: str
) -> None:
    """Run a faust worker with one pass-through agent until SIGTERM."""
    import faust  # imported here: the parent never needs faust

    settings: dict[str, Any] = {}
    if case.tuned:
        settings.update(TUNED_FAUST_SETTINGS)
    if case.big_producer_batches:
        settings.update(BIG_PRODUCER_SETTINGS)
    app = faust.App(
        group,
        broker=broker_url,
        store="memory://",
        web_enabled=False,
        datadir=datadir,  # keep faust's data dir out of the source tree
        **settings,
    )

    if not case.tuned:
        # The default: faust's json codec both ways, one awaited send per event.
        source = app.topic(src)
        sink = app.topic(dst)

        @app.agent(source)
        async def pass_through(stream: Any) -> None:
            async for value in stream:
                await sink.send(value=value)

    else:
        source = app.topic(src, value_serializer="raw")
        sink = app.topic(dst, value_serializer="raw")

        @app.agent(source)
        async def pass_through_batched(stream: Any) -> None:
            async for batch in stream.take(TAKE_MAX, within=TAKE_WITHIN):
                if case.send == "await":
                    # faust's Topic.send awaits only the enqueue into aiokafka's accumulator,
                    # not the delivery, but that still costs a trip through the loop per event.
                    for value in batch:
                        await sink.send(value=recode(value))
                elif case.send == "batch":
                    # Keeps at-least-once honest: the batch is delivered before the next take().
                    deliveries = [await sink.send(value=recode(value)) for value in batch]
                    await asyncio.gather(*deliveries)
                else:
                    # Fire and forget into faust's producer buffer; offsets may be committed
                    # before delivery, so this trades safety for speed.
                    for value in batch:
                        sink.send_soon(value=recode(value))

    worker = faust.Worker(app, loglevel="WARNING", quiet=True)
    if case.tuned:
        # faust's progress spinner, on whenever the log level is WARN or above (the CLI default),
        # sets the root logger to DEBUG so that every record spins it: each of the many
        # `logger.debug()` calls on the send path then builds a LogRecord. Dropping the
        # spinner keeps the root logger at WARNING.
        worker.spinner = None
    worker.execute_from_commandline()


async def run_aiokafka_loop(bootstrap: str, src: str, dst: str, group: str, events: int) -> None:
    """The ceiling: batched consume → decode/encode → produce until `events` were forwarded."""
    consumer = AIOKafkaConsumer(
        src,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=8 * MIB,
        fetch_max_bytes=64 * MIB,
        session_timeout_ms=6000,
        rebalance_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, max_batch_size=BIG_PRODUCER_BATCH, linger_ms=5
    )
    await producer.start()
    await consumer.start()
    try:
        forwarded = 0
        while forwarded < events:
            batches = await consumer.getmany(timeout_ms=200, max_records=10_000)
            for records in batches.values():
                for record in records:
                    assert record.value is not None
                    # `send` returns once the record is in the accumulator; its delivery
                    # future is not awaited (flush below).
                    await producer.send(dst, recode(record.value), key=record.key)
                forwarded += len(records)
        await producer.flush()
        await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()


# --------------------------------------------------------------------------------------------
# Parent side


def load_embedded_broker() -> Any:
    """`vigil.broker.EmbeddedBroker`, also while the `vigil` package is still being assembled."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    try:
        from vigil.broker import EmbeddedBroker
    except ImportError:
        path = REPO_ROOT / "vigil" / "broker.py"
        spec = importlib.util.spec_from_file_location("vigil_broker", path)
        if spec is None or spec.loader is None:
            raise
        module: ModuleType = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.EmbeddedBroker
    return EmbeddedBroker


async def create_topics(bootstrap: str, names: Sequence[str], partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1) for name in names])
    finally:
        await admin.close()


async def prefill(bootstrap: str, topic: str, events: int, size: int) -> float:
    """Produce `events` events to `topic` in big batches; return the seconds it took."""
    payloads = [make_event(i, size) for i in range(events)]
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, max_batch_size=BIG_PRODUCER_BATCH, linger_ms=10
    )
    await producer.start()
    try:
        started = time.monotonic()
        for value, key in payloads:
            await producer.send(topic, value, key=key)
        await producer.flush()
        return time.monotonic() - started
    finally:
        await producer.stop()


def _die_with_parent() -> None:
    """SIGKILL the worker if the benchmark dies, so an interrupted run leaves nothing behind."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


async def spawn_worker(
    case: Case, bootstrap: str, src: str, dst: str, group: str, events: int, workdir: Path
) -> tuple[asyncio.subprocess.Process, Path]:
    log_path = workdir / f"{case.name}.log"
    pythonpath = [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, pythonpath))}
    with open(log_path, "wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.passthrough",
            "--worker",
            case.name,
            "--bootstrap",
            bootstrap,
            "--src",
            src,
            "--dst",
            dst,
            "--group",
            group,
            "--events",
            str(events),
            "--datadir",
            str(workdir / f"{case.name}-data"),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=str(REPO_ROOT),
            env=env,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - needed for PDEATHSIG
        )
    return proc, log_path


async def stop_worker(proc: asyncio.subprocess.Process, grace: float = 15.0) -> float | None:
    """SIGTERM (faust stops gracefully), then SIGKILL; return seconds to exit if we signalled."""
    if proc.returncode is not None:
        return None
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), grace)
    except TimeoutError:
        proc.kill()
        await proc.wait()
    return time.monotonic() - started


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far, every thread (Linux)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run_case(case: Case, bootstrap: str, args: argparse.Namespace, workdir: Path) -> Result:
    """Fresh topics and group, pre-fill A, start the worker, count its output on B."""
    tag = uuid.uuid4().hex[:8]
    group = f"bench-{case.name}-{tag}"
    src, dst = f"{group}-a", f"{group}-b"
    await create_topics(bootstrap, [src, dst], args.partitions)
    fill_s = await prefill(bootstrap, src, args.events, args.size)
    print(f"[{case.name}] pre-filled {args.events} events in {fill_s:.2f} s", flush=True)

    counter = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=8 * MIB,
        fetch_max_bytes=64 * MIB,
        fetch_max_wait_ms=50,  # fine-grained arrival times
    )
    await counter.start()
    proc: asyncio.subprocess.Process | None = None
    try:
        counter.assign([TopicPartition(dst, p) for p in range(args.partitions)])
        await counter.seek_to_beginning()
        proc, log_path = await spawn_worker(case, bootstrap, src, dst, group, args.events, workdir)
        spawned = time.monotonic()
        startup_cap = args.startup_cap
        deadline = spawned + startup_cap + args.events / 500 + 30  # ≥ 500 events/s once started
        count = first_batch = 0
        cpu_first = cpu_last = 0.0
        first: float | None = None
        last: float | None = None
        exited_at: float | None = None
        problem = ""
        while count < args.events:
            now = time.monotonic()
            if first is None and now - spawned > startup_cap:
                problem = f"no event within the {startup_cap:.0f} s start-up cap"
                break
            if now > deadline:
                problem = f"timed out with {count}/{args.events} events"
                break
            if proc.returncode is not None:
                # The ceiling exits by itself after its flush; give its last records time to
                # show up, but stop waiting for a worker that died early.
                exited_at = exited_at or now
                if proc.returncode != 0 or now - exited_at > 5:
                    problem = f"worker exited with code {proc.returncode} after {count} events"
                    break
            batches = await counter.getmany(timeout_ms=100, max_records=100_000)
            arrived = sum(len(records) for records in batches.values())
            if arrived:
                stamp = time.monotonic()
                with contextlib.suppress(OSError):  # an exited worker keeps its last reading
                    cpu_last = cpu_seconds(proc.pid)
                if first is None:
                    first, first_batch, cpu_first = stamp, arrived, cpu_last
                last = stamp
                count += arrived
        if case.kind == "aiokafka" and not problem:
            # The ceiling loop exits by itself once it has flushed; let it, rather than kill it.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 10)
        stop_s = await stop_worker(proc)
        if problem:
            tail = log_path.read_text(errors="replace").splitlines()[-15:]
            print(f"[{case.name}] {problem}; worker log tail:\n  " + "\n  ".join(tail), flush=True)
        seconds = (last - first) if first is not None and last is not None else None
        rate = (count - first_batch) / seconds if seconds and count > first_batch else None
        startup = (first - spawned) if first is not None else None
        cpu = ((cpu_last - cpu_first) / (count - first_batch)
               if count > first_batch and cpu_last > cpu_first else None)
        return Result(case, count, seconds, rate, startup, stop_s, problem, cpu)
    finally:
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()
        await counter.stop()


async def import_seconds() -> float:
    """How long a fresh interpreter takes to import faust and aiokafka (part of every start-up)."""
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import faust, aiokafka, orjson"
    )
    await proc.wait()
    return time.monotonic() - started


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_report(
    results: Sequence[Result], args: argparse.Namespace, imports: float, footer: str
) -> None:
    baseline = next((r for r in results if r.case.name == "baseline"), None)
    base_rate = baseline.rate if baseline else None
    print()
    print(
        f"pass-through, {args.events} events of ~{args.size} B, "
        f"{args.partitions} partitions, one broker"
    )
    header = f"{'name':<26} {'events':>7} {'seconds':>8} {'events/s':>9} {'vs base':>8}  note"
    print(header)
    print("-" * len(header) + "-" * 40)
    for r in results:
        ratio = f"{r.rate / base_rate:.2f}x" if r.rate and base_rate else "-"
        note = r.case.note + (f"  [{r.problem}]" if r.problem else "")
        if r.rates:
            note += "  [best of " + "/".join(_fmt(x, ".0f") for x in r.rates) + "]"
        seconds, rate = _fmt(r.seconds, "8.2f"), _fmt(r.rate, "9.0f")
        print(f"{r.case.name:<26} {r.events:>7} {seconds:>8} {rate:>9} {ratio:>8}  {note}")
    print()
    print(f"start-up: spawn -> first event on B (includes ~{imports:.1f} s interpreter + imports)")
    for r in results:
        default = r.case.kind == "faust" and not r.case.tuned
        timeouts = "default 60 s timeouts" if default else "6 s timeouts"
        startup = _fmt(r.startup, "6.1f") if r.startup is not None else f">{args.startup_cap:.0f}"
        stop = _fmt(r.stop, ".1f")
        print(f"  {r.case.name:<26} {startup:>8} s   ({timeouts}; SIGTERM to exit {stop} s)")
    print(footer)


async def run_all(args: argparse.Namespace) -> None:
    cases = [CASES_BY_NAME[name] for name in args.cases] if args.cases else list(CASES)
    broker = None
    if args.bootstrap:
        bootstrap = args.bootstrap
    else:
        broker = load_embedded_broker()().start()
        bootstrap = broker.bootstrap
    results: list[Result] = []
    try:
        imports = await import_seconds()
        with tempfile.TemporaryDirectory(prefix="vigil-bench-") as tmp:
            for case in cases:
                # Noise on a shared 2-core box only ever slows a run down, so the best of a few
                # runs is the fairer figure; the ceiling's window is < 1 s, so it gets more runs.
                repeat = args.ceiling_repeat if case.kind == "aiokafka" else args.repeat
                runs = [await run_case(case, bootstrap, args, Path(tmp)) for _ in range(repeat)]
                best = max(runs, key=lambda r: r.rate or 0.0)
                if repeat > 1:
                    best = replace(best, rates=tuple(r.rate for r in runs))
                results.append(best)
        rss = broker.rss_bytes() / MIB if broker else 0.0  # 0 with --bootstrap
        print_report(results, args, imports, f"broker RSS at the end: {rss:.0f} MiB")
    finally:
        if broker is not None:
            broker.stop()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.passthrough", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--events", type=int, default=20_000, help="events per case")
    parser.add_argument("--size", type=int, default=1024, help="approximate event size, bytes")
    parser.add_argument(
        "--partitions", type=int, default=6, help="partitions of A and B (Vigil's default: 6)"
    )
    parser.add_argument(
        "--startup-cap",
        type=float,
        default=60.0,
        help="give up on a worker with no event on B after this many seconds",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per faust case; the best is reported"
    )
    parser.add_argument(
        "--ceiling-repeat", type=int, default=3, help="runs of the (short) ceiling case"
    )
    parser.add_argument("--cases", nargs="+", choices=list(CASES_BY_NAME), help="run only these")
    parser.add_argument("--bootstrap", help="use this broker (host:port), not an embedded one")
    # Worker mode (internal): the parent re-runs this module as `--worker CASE ...`.
    parser.add_argument("--worker", choices=list(CASES_BY_NAME), help=argparse.SUPPRESS)
    parser.add_argument("--src", help=argparse.SUPPRESS)
    parser.add_argument("--dst", help=argparse.SUPPRESS)
    parser.add_argument("--group", help=argparse.SUPPRESS)
    parser.add_argument("--datadir", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker is None:
        asyncio.run(run_all(args))
        return
    case = CASES_BY_NAME[args.worker]
    if case.kind == "faust":
        url = f"kafka://{args.bootstrap}"
        run_faust_worker(case, url, args.src, args.dst, args.group, args.datadir)
    else:
        asyncio.run(run_aiokafka_loop(args.bootstrap, args.src, args.dst, args.group, args.events))


if __name__ == "__main__":
    main()

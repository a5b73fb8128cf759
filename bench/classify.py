"""Classification throughput: the classify agent on the embedded broker vs bare onnxruntime.

Why: the classify role should cost little on top of the models themselves. For each case this
measures, in one run on one box:

* **bare** — the same detector code (`NsfwImageDetector.detect_batch`: safe decode, preprocess,
  onnxruntime) on the same images, with the same number of threads and the same chunking as the
  agent, in this process, no Kafka: what the CPU can do;
* **agent** — `vigil worker --agents classify` (a subprocess, as deployed) with those settings,
  reading the same images pre-filled into `forum.images.v1` on the embedded broker and sending
  `nsfw_image` signals to `safety.signals.v1`. Arrivals are counted by a plain aiokafka consumer;
  the rate runs from the first arrival to the last (worker start-up excluded), leaving out the
  records of the first fetch, which only mark the start.

ratio = agent / bare (target ≥ 0.85), where bare is the mean of a bare run just before and one
just after the agent run: this box is shared, and the drift between the two (reported) shows how
much the load moved while the agent ran. `--repeat R` repeats that triple and reports every
ratio and their median. The sweep covers `VIGIL_CLASSIFY_BATCH_SIZE` and
`VIGIL_CLASSIFY_THREADS` (with `VIGIL_MODEL_INTRA_OP_THREADS` = 1, and one case of one thread
× 2 intra-op threads); then text posts (`TextAbuseDetector`) the same way. Images are the
scikit-image sample photographs re-encoded as 640×480 JPEGs (≈ 50 KB, a typical inline upload).

    .venv/bin/python -m bench.classify [--images N] [--posts N] [--quick | --posts-only] [--repeat R]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import subprocess
import sys
import tempfile
import statistics
import time
import uuid
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from PIL import Image

from agents.classify import split
from agents.detectors.nsfw_image import NsfwImageDetector
from agents.detectors.text_abuse import TextAbuseDetector
from models import RuntimeOptions, load_model
from models.build import ensure_built
from streams.codec import decode
from streams.topics import IMAGES, POSTS, SIGNALS, TopicSpec
from vigil.broker import EmbeddedBroker, ensure_topics, free_port

PHOTOS = ("astronaut", "camera", "chelsea", "coffee", "coins", "hubble_deep_field",
          "immunohistochemistry", "moon", "page", "retina", "rocket", "text", "clock", "grass",
          "gravel", "brick")
SENTENCES = (
    "My toddler finally slept through the night!", "Does anyone have tips for potty training?",
    "What age did your kids start walking?", "Shut up, you stupid bitch.",
    "Any recommendations for a car seat that fits in a small car?",
    "How do you handle tantrums in the supermarket? Mine screams every time we go shopping.",
)


@dataclass(frozen=True)
class Case:
    """One configuration of the classify role."""

    batch: int
    threads: int
    intra: int = 1
    inflight: int = 2

    @property
    def label(self) -> str:
        return f"batch={self.batch} threads={self.threads} intra={self.intra}"


def jpeg_images(count: int) -> list[bytes]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import skimage.data
    base = []
    for name in PHOTOS:
        array = np.asarray(getattr(skimage.data, name)())
        if array.dtype != np.uint8:
            array = (255 * (array - array.min()) / (np.ptp(array) or 1)).astype(np.uint8)
        base.append(Image.fromarray(array).convert("RGB").resize((640, 480)))
    out = []
    for index in range(count):
        buffer = io.BytesIO()
        # a different quality per copy: distinct bytes, comparable cost
        base[index % len(base)].save(buffer, format="JPEG", quality=70 + index % 20)
        out.append(buffer.getvalue())
    return out


def image_events(images: Sequence[bytes]) -> list[bytes]:
    import base64
    return [json.dumps({
        "specversion": "1.0", "id": f"bench-img-{i}", "source": "bench", "type":
        "forum.image.uploaded", "data": {
            "image_id": f"img-{i}", "post_id": f"p-{i}", "author": {"id": "u1"},
            "content_type": "image/jpeg", "data_b64": base64.b64encode(data).decode()},
    }).encode() for i, data in enumerate(images)]


def post_events(count: int) -> list[bytes]:
    return [json.dumps({
        "specversion": "1.0", "id": f"bench-post-{i}", "source": "bench",
        "type": "forum.post.created", "data": {
            "post_id": f"post-{i}", "thread_id": f"t-{i % 50}", "author": {"id": "u1"},
            "body": f"{SENTENCES[i % len(SENTENCES)]} (#{i})"},
    }).encode() for i in range(count)]


def bare_rate(detect: Callable[[Sequence[Any]], list[Any]], events: Sequence[Any],
              case: Case) -> float:
    """Events/s of `detect` over `events`, in agent-sized batches split over `threads`."""
    with ThreadPoolExecutor(case.threads) as pool:
        list(pool.map(detect, split(events[: case.threads * 2], case.threads)))  # warm
        started = time.perf_counter()
        for start in range(0, len(events), case.batch):
            batch = events[start:start + case.batch]
            list(pool.map(detect, split(batch, case.threads)))
        return len(events) / (time.perf_counter() - started)


async def produce_all(bootstrap: str, topic: str, values: Sequence[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                max_request_size=8 * 1024 * 1024, linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(topic, v, key=str(i % 64).encode())
                   for i, v in enumerate(values)]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def count_signals(bootstrap: str, topic: str, detector: str, expected: int,
                        timeout: float) -> tuple[int, float, float]:
    """(arrivals after the first fetch, time of first fetch, time of last arrival)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                fetch_max_wait_ms=50)
    await consumer.start()
    seen, first_batch, t_first, t_last = 0, 0, 0.0, 0.0
    deadline = time.monotonic() + timeout
    marker = f'"detector":"{detector}"'.encode()
    try:
        while seen < expected:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {seen}/{expected} {detector} signals in {timeout} s")
            batches = await consumer.getmany(timeout_ms=200)
            got = sum(1 for msgs in batches.values() for m in msgs
                      if m.value and marker in m.value.replace(b" ", b""))
            if got:
                now = time.perf_counter()
                if not seen:
                    first_batch, t_first = got, now
                seen += got
                t_last = now
    finally:
        await consumer.stop()
    return seen - first_batch, t_first, t_last


def agent_rate(broker: EmbeddedBroker, case: Case, spec: TopicSpec, detector: str,
               values: Sequence[bytes], workdir: Path) -> float:
    prefix = f"b{uuid.uuid4().hex[:8]}."
    asyncio.run(ensure_topics(broker.bootstrap, prefix=prefix, partitions=6, replication=1))
    asyncio.run(produce_all(broker.bootstrap, spec.full_name(prefix), values))
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    data_dir = workdir / prefix.strip(".")
    data_dir.mkdir()
    env.update({
        "VIGIL_BROKER": broker.url, "VIGIL_TOPIC_PREFIX": prefix,
        "VIGIL_DATA_DIR": str(data_dir), "VIGIL_WEB_PORT": str(free_port()),
        "VIGIL_SIGNING_KEY": "bench", "VIGIL_TOPIC_PARTITIONS": "6",
        "VIGIL_CLASSIFY_BATCH_SIZE": str(case.batch),
        "VIGIL_CLASSIFY_THREADS": str(case.threads),
        "VIGIL_CLASSIFY_INFLIGHT": str(case.inflight),
        "VIGIL_MODEL_INTRA_OP_THREADS": str(case.intra),
    })
    with open(data_dir / "worker.log", "wb") as log:
        proc = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "vigil.cli", "worker", "--agents", "classify"],
            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        counted, t_first, t_last = asyncio.run(count_signals(
            broker.bootstrap, SIGNALS.full_name(prefix), detector, len(values), 600))
    finally:
        proc.terminate()
        proc.wait(30)
    return counted / (t_last - t_first) if t_last > t_first else float("nan")


@dataclass(frozen=True)
class Row:
    """One case's measurements: per repeat, bare before, agent, bare after."""

    kind: str
    case: Case
    triples: tuple[tuple[float, float, float], ...]

    @property
    def ratios(self) -> list[float]:
        """agent / mean of the two bare runs around it, per repeat."""
        return [agent / ((before + after) / 2) for before, agent, after in self.triples]

    def markdown(self) -> str:
        bare = statistics.median((b + a) / 2 for b, _, a in self.triples)
        agent = statistics.median(t[1] for t in self.triples)
        drift = ", ".join(f"{a / b:.2f}" for b, _, a in self.triples)
        return (f"| {self.kind} | {self.case.label} | {bare:.0f} | {agent:.0f} | "
                f"{statistics.median(self.ratios):.2f} | "
                + ", ".join(f"{r:.2f}" for r in self.ratios) + f" | {drift} |")


def measure(kind: str, case: Case, repeat: int, bare: Callable[[], float],
            agent: Callable[[], float]) -> Row:
    """`repeat` × (bare, agent, bare): the bare runs bracket the agent run in time, so a load
    change on this shared box shows up as drift between them (last column) instead of silently
    skewing the ratio."""
    triples = []
    for _ in range(repeat):
        before = bare()
        through_agent = agent()
        triples.append((before, through_agent, bare()))
    row = Row(kind, case, tuple(triples))
    print(row.markdown(), flush=True)
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.classify")
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--posts", type=int, default=20_000)
    parser.add_argument("--quick", action="store_true", help="three image cases, no posts")
    parser.add_argument("--posts-only", action="store_true", help="the posts case alone")
    parser.add_argument("--repeat", type=int, default=1,
                        help="(bare, agent, bare) runs per case; the median ratio is reported")
    args = parser.parse_args(argv)
    ensure_built()
    cpus = os.cpu_count() or 1
    images = jpeg_images(args.images)
    image_values = image_events(images)
    image_cloud = [decode(IMAGES, v) for v in image_values]
    post_values = post_events(args.posts)
    post_cloud = [decode(POSTS, v) for v in post_values]
    cases = [Case(1, 1), Case(8, 1), Case(32, 1), Case(1, 2), Case(8, 2), Case(32, 2),
             Case(32, 1, intra=2)]
    if args.posts_only:
        cases = []
    elif args.quick:
        cases = [Case(8, 2), Case(32, 2), Case(32, 1, intra=2)]
    print(f"cpus={cpus}, {len(images)} JPEG 640×480 images "
          f"(mean {sum(map(len, images)) // len(images) // 1024} KB), {args.posts} posts")
    rows = []
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        for case in cases:
            detector = NsfwImageDetector(load_model("open_nsfw", RuntimeOptions(
                intra_op_threads=case.intra)), 0.5)
            rows.append(measure(
                "images", case, args.repeat,
                lambda c=case, d=detector: bare_rate(d.detect_batch, image_cloud, c),
                lambda c=case: agent_rate(broker, c, IMAGES, "nsfw_image", image_values,
                                          Path(tmp))))
        for case in ([Case(500, cpus)] if not args.quick else []):
            detector_t = TextAbuseDetector(load_model("alt_profanity_check"), 0.7)
            rows.append(measure("posts", case, args.repeat,
                                lambda c=case: bare_rate(detector_t.detect_batch, post_cloud, c),
                                lambda c=case: agent_rate(broker, c, POSTS, "text_abuse",
                                                          post_values, Path(tmp))))
    print("\n| input | case | bare /s | agent /s | ratio (median) | ratios | bare after/before |"
          "\n|---|---|---|---|---|---|---|")
    for row in rows:
        print(row.markdown())

if __name__ == "__main__":
    main()

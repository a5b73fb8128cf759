"""The image path through the pipeline as a ratio of bare hashing + inference (issue 9, target
≥ 0.85), on the same images in the same run.

- **bare** — in this process, no Kafka: the hashing role's work (`ImageHasher`, one task per
  image on a pool of one thread per core, as `agents.hashing` does; `bench.hashing`'s helper)
  and then the classify role's work (`NsfwImageDetector.detect_batch` with classify's default
  batch size, threads and onnxruntime threads; `bench.classify.bare_rate`) over the same images,
  the two at the same time on their own pools, as the two roles run in one worker: the bare
  rate is images ÷ the time until both are done. (Run one after the other, a bare case gets
  fewer runnable threads than the worker, which on a box shared with other work gives the
  worker a larger share of the CPU: ratios of 1.3–2.1 in that variant, 2026-11-25.)
- **pipeline** — the same images pre-filled into `forum.images.v1` on the embedded broker, then
  `vigil worker --agents intake,hashing,classify,decide` (shipped policy: an image's verdict
  waits for sha256, md5, pdq and nsfw_image). Verdicts are counted by a group-less consumer;
  the rate runs from the first fetch that brings verdicts to the last verdict (start-up and the
  first fetch excluded, as `bench.classify` does). The decide deadline is raised to 10 min so a
  backlog is decided on its signals, not held at the deadline.

Both sides also measure **CPU seconds per image** (bare: this process's CPU time; pipeline: the
worker's user + system time between the first and the last verdict), which a shared box
disturbs far less than wall-clock rates: CPU efficiency = bare CPU per image ÷ pipeline CPU per
image (1.0 = the pipeline adds no CPU on top of hashing + inference).

Cases alternate (bare, pipeline, bare, pipeline …) so load drifts on the shared box hit both;
each side's best run counts (noise only slows). Images: `bench.classify.jpeg_images`
(640×480 JPEG photographs, ≈ 50 KB, a typical inline upload).

    PYTHONPATH=. .venv/bin/python -m bench.image_path [--images 300] [--repeat 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer

from agents.detectors.nsfw_image import NsfwImageDetector
from bench.classify import Case, bare_rate, image_events, jpeg_images, produce_all
from bench.hashing import _hash_events
from models import RuntimeOptions, load_model
from models.build import ensure_built
from streams.codec import decode
from streams.topics import IMAGES, VERDICTS
from tests.integration.helpers import start_vigil, unique_prefix, vigil_env
from vigil.broker import EmbeddedBroker, ensure_topics
from vigil.settings import Settings


def hashing_rate(images: list[bytes], threads: int) -> float:
    """Images/s of the hashing role's work: one task per image on `threads` threads."""
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(_hash_events, [images[:2]] * threads))  # warm
        started = time.perf_counter()
        list(pool.map(_hash_events, [[data] for data in images]))
        return len(images) / (time.perf_counter() - started)


@dataclass
class Side:
    """One measurement: images (or verdicts) per second and CPU seconds per image."""

    rate: float
    cpu_per_image: float
    detail: str = ""


def bare(images: list[bytes], detector: NsfwImageDetector, case: Case) -> Side:
    cloud = [decode(IMAGES, v) for v in image_events(images)]
    with ThreadPoolExecutor(2) as both:
        started, cpu = time.perf_counter(), time.process_time()
        hashing = both.submit(hashing_rate, images, max(1, min(4, os.cpu_count() or 1)))
        inference = both.submit(bare_rate, detector.detect_batch, cloud, case)
        rates = hashing.result(), inference.result()
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return Side(len(images) / seconds, cpu / len(images),
                f"hashing {rates[0]:.1f}/s, inference {rates[1]:.1f}/s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of `pid` (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def count_verdicts(bootstrap: str, topic: str, expected: int, timeout: float,
                         cpu: Callable[[], float]) -> tuple[int, float, float, float]:
    """(verdicts after the first fetch that had any, its time, the last verdict's time, the
    worker's CPU seconds between the two)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                fetch_max_wait_ms=50)
    await consumer.start()
    seen, first, t_first, t_last, cpu_first, cpu_last = 0, 0, 0.0, 0.0, 0.0, 0.0
    deadline = time.monotonic() + timeout
    try:
        while seen < expected:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {seen}/{expected} verdicts in {timeout} s")
            got = sum(len(m) for m in (await consumer.getmany(timeout_ms=200)).values())
            if got:
                now = time.perf_counter()
                if not seen:
                    first, t_first, cpu_first = got, now, cpu()
                seen += got
                t_last, cpu_last = now, cpu()
    finally:
        await consumer.stop()
    return seen - first, t_first, t_last, cpu_last - cpu_first


def pipeline(broker: EmbeddedBroker, images: list[bytes], workdir: Path) -> Side:
    """Verdicts/s of a worker draining the images as a backlog."""
    prefix = unique_prefix()
    asyncio.run(ensure_topics(broker.bootstrap, prefix=prefix, partitions=6, replication=1))
    values = image_events(images)
    for i, value in enumerate(values):  # fresh content ids per run (decide answers each once)
        values[i] = value.replace(b'"img-', f'"{prefix}img-'.encode())
    asyncio.run(produce_all(broker.bootstrap, IMAGES.full_name(prefix), values))
    env = vigil_env(broker.url, prefix, workdir / uuid.uuid4().hex,
                    VIGIL_DECIDE_DEADLINE_MS="600000", VIGIL_TOPIC_PARTITIONS="6")
    worker = start_vigil(["worker", "--agents", "intake,hashing,classify,decide"], env,
                         Path(env["VIGIL_DATA_DIR"]))
    try:
        counted, t_first, t_last, cpu = asyncio.run(count_verdicts(
            broker.bootstrap, VERDICTS.full_name(prefix), len(values), 900,
            lambda: cpu_seconds(worker.proc.pid)))
    finally:
        worker.stop()
    rate = counted / (t_last - t_first) if t_last > t_first else float("nan")
    return Side(rate, cpu / counted if counted else float("nan"))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.image_path",
                                     description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    ensure_built()
    settings = Settings()
    case = Case(settings.classify_batch_size, settings.classify_threads or os.cpu_count() or 1,
                intra=settings.model_intra_op_threads)
    detector = NsfwImageDetector(load_model("open_nsfw", RuntimeOptions(
        intra_op_threads=case.intra)), 0.5)
    images = jpeg_images(args.images)
    print(f"{len(images)} JPEG 640×480 images; classify {case.label}; load average "
          f"{os.getloadavg()[0]:.2f}", flush=True)
    bares: list[Side] = []
    pipes: list[Side] = []
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        for run in range(args.repeat):
            bares.append(bare(images, detector, case))
            print(f"run {run + 1}: bare     {bares[-1].rate:6.1f} images/s, "
                  f"{bares[-1].cpu_per_image * 1000:5.1f} CPU ms/image ({bares[-1].detail})",
                  flush=True)
            pipes.append(pipeline(broker, images, Path(tmp)))
            print(f"run {run + 1}: pipeline {pipes[-1].rate:6.1f} verdicts/s, "
                  f"{pipes[-1].cpu_per_image * 1000:5.1f} CPU ms/image; rate ratio "
                  f"{pipes[-1].rate / bares[-1].rate:.2f}, CPU efficiency "
                  f"{bares[-1].cpu_per_image / pipes[-1].cpu_per_image:.2f}", flush=True)
    best_bare, best_pipe = max(b.rate for b in bares), max(p.rate for p in pipes)
    least_bare = min(b.cpu_per_image for b in bares)
    least_pipe = min(p.cpu_per_image for p in pipes)
    print(f"best: rate ratio {best_pipe / best_bare:.2f} ({best_pipe:.1f} / {best_bare:.1f} "
          f"images/s), CPU efficiency {least_bare / least_pipe:.2f} ({least_bare * 1000:.1f} / "
          f"{least_pipe * 1000:.1f} ms); load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

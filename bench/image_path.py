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
from concurrent.futures import ThreadPoolExecutor
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


def bare(images: list[bytes], detector: NsfwImageDetector, case: Case) -> tuple[float, float,
                                                                                float]:
    """(combined, hashing, inference) images/s."""
    cloud = [decode(IMAGES, v) for v in image_events(images)]
    with ThreadPoolExecutor(2) as both:
        started = time.perf_counter()
        hashing = both.submit(hashing_rate, images, max(1, min(4, os.cpu_count() or 1)))
        inference = both.submit(bare_rate, detector.detect_batch, cloud, case)
        rates = hashing.result(), inference.result()
        return len(images) / (time.perf_counter() - started), *rates


async def count_verdicts(bootstrap: str, topic: str, expected: int, timeout: float
                         ) -> tuple[int, float, float]:
    """(verdicts after the first fetch that had any, its time, the last verdict's time)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                fetch_max_wait_ms=50)
    await consumer.start()
    seen, first, t_first, t_last = 0, 0, 0.0, 0.0
    deadline = time.monotonic() + timeout
    try:
        while seen < expected:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {seen}/{expected} verdicts in {timeout} s")
            got = sum(len(m) for m in (await consumer.getmany(timeout_ms=200)).values())
            if got:
                now = time.perf_counter()
                if not seen:
                    first, t_first = got, now
                seen += got
                t_last = now
    finally:
        await consumer.stop()
    return seen - first, t_first, t_last


def pipeline(broker: EmbeddedBroker, images: list[bytes], workdir: Path) -> float:
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
        counted, t_first, t_last = asyncio.run(count_verdicts(
            broker.bootstrap, VERDICTS.full_name(prefix), len(values), 900))
    finally:
        worker.stop()
    return counted / (t_last - t_first) if t_last > t_first else float("nan")


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
    bares: list[float] = []
    pipes: list[float] = []
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        for run in range(args.repeat):
            combined, hashing, inference = bare(images, detector, case)
            bares.append(combined)
            print(f"run {run + 1}: bare {combined:6.1f} images/s (hashing {hashing:.1f}/s, "
                  f"inference {inference:.1f}/s)", flush=True)
            pipes.append(pipeline(broker, images, Path(tmp)))
            print(f"run {run + 1}: pipeline {pipes[-1]:6.1f} verdicts/s  ratio "
                  f"{pipes[-1] / combined:.2f}", flush=True)
    print(f"best: bare {max(bares):.1f}/s, pipeline {max(pipes):.1f}/s, ratio "
          f"{max(pipes) / max(bares):.2f} (per run: "
          f"{', '.join(f'{p / b:.2f}' for p, b in zip(pipes, bares, strict=True))}); "
          f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

"""Hashing benchmark: image hashing cost vs a bare decode, and PDQ bank lookups at scale.

    python -m bench.hashing                     # 1M and 10M bank sizes
    python -m bench.hashing --sizes 100000,1000000 --images 40

Everything is measured in this one run on this machine, and reported as ratios next to the raw
numbers (so results from different boxes compare):

1. per image: bare Pillow decode (open + load) vs Vigil's whole per-image work (safe decode,
   shrink, PDQ with 8 dihedral variants, pHash, dHash, sha256, md5, bank lookup), and the
   same work on 2 threads vs 1 (is the GIL the limit?);
2. per bank size: multi-index-hash build time, memory (RSS growth), hash lookups/s one image
   at a time (its 8 dihedral queries in one call) and in batches of 256, vs brute-force numpy
   popcount over the same hashes, and recall vs brute force on queries planted at distance
   0..31 (must be 100%);
3. (--agent) images/s through the hashing agent (`vigil worker --agents hashing`) on the
   embedded broker vs the same hashing in-process (same batches, same threads): ratio;
4. (--pool) hashing on 2 threads vs 2 processes vs 1 thread: does PDQ hold the GIL?
"""

from __future__ import annotations

import argparse
import io
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image, ImageDraw

from agents.bank_index import MultiIndexHash, brute_force_search
from agents.banks import BankIndex
from agents.hashing import Fetched, ImageHasher
from agents.imaging import DecodeLimits
from streams.events import Account, CloudEvent, ImageData


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def picture(seed: int, size: tuple[int, int]) -> Image.Image:
    rnd = random.Random(seed)
    gradient = Image.linear_gradient("L").resize(size)
    img = Image.merge("RGB", (gradient, gradient.rotate(90).resize(size),
                              Image.new("L", size, rnd.randrange(256))))
    draw = ImageDraw.Draw(img)
    for _ in range(30):
        x, y = rnd.randrange(size[0]), rnd.randrange(size[1])
        draw.ellipse([x, y, x + rnd.randrange(10, size[0] // 3), y + rnd.randrange(10, size[1] // 3)],
                     fill=(rnd.randrange(256), rnd.randrange(256), rnd.randrange(256)))
    return img


def encoded(img: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt, **({"quality": 85} if fmt == "JPEG" else {}))
    return out.getvalue()


def per_second(fn: Callable[[], object], n: int) -> float:
    fn()  # warm-up
    started = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - started)


def bench_images(count: int) -> None:
    print("== per image: Vigil's hashing vs a bare Pillow decode of the same bytes")
    empty = BankIndex()  # built once, as the agent does (an index build is not per image)
    hasher = ImageHasher(lambda: empty, DecodeLimits())

    def event(data: bytes) -> Fetched:
        return Fetched(CloudEvent(specversion="1.0", id="b", source="bench",
                                  type="forum.image.uploaded",
                                  data=ImageData(image_id="b", author=Account(id="u"),
                                                 data_b64=data)), data)

    print(f"{'image':<22}{'decode/s':>10}{'hashing/s':>11}{'cost ratio':>12}")
    for size in ((640, 480), (1024, 768), (3000, 2000)):
        for fmt in ("JPEG", "PNG"):
            images = [encoded(picture(i, size), fmt) for i in range(max(4, count // 4))]
            n = max(4, count // (4 if size[0] > 2000 else 1))

            def bare(images: list[bytes] = images) -> None:
                for data in images:
                    Image.open(io.BytesIO(data)).load()

            def full(images: list[bytes] = images) -> None:
                for data in images:
                    hasher.signals(event(data))

            reps = max(1, n // len(images))
            decode_rate = per_second(bare, reps) * len(images)
            hash_rate = per_second(full, reps) * len(images)
            print(f"{f'{size[0]}x{size[1]} {fmt}':<22}{decode_rate:>10.0f}{hash_rate:>11.0f}"
                  f"{decode_rate / hash_rate:>11.2f}x")

    images = [encoded(picture(i, (640, 480)), "JPEG") for i in range(count)]

    def run(chunk: list[bytes]) -> None:
        for data in chunk:
            hasher.signals(event(data))

    run(images[:2])
    started = time.perf_counter()
    run(images)
    one = len(images) / (time.perf_counter() - started)
    with ThreadPoolExecutor(2) as pool:
        started = time.perf_counter()
        list(pool.map(run, [images[0::2], images[1::2]]))
        two = len(images) / (time.perf_counter() - started)
    print(f"640x480 JPEG, whole hashing: 1 thread {one:.0f}/s, 2 threads {two:.0f}/s "
          f"(ratio {two / one:.2f}: >1 means the GIL is released enough to use threads)")


def flip(word: np.ndarray, rng: np.random.Generator, distance: int) -> np.ndarray:
    out = word.copy()
    for bit in rng.choice(256, distance, replace=False):
        out[bit // 64] ^= np.uint64(1) << np.uint64(63 - int(bit) % 64)
    return out


def bench_index(size: int, seconds: float = 3.0) -> None:
    rng = np.random.default_rng(size)
    words = rng.integers(0, 2**64, size=(size, 4), dtype=np.uint64)
    before = rss_mb()
    started = time.perf_counter()
    index = MultiIndexHash(words)
    build = time.perf_counter() - started
    grown = rss_mb() - before + words.nbytes / 2**20  # the hashes themselves count too
    # one image = its 8 dihedral variants; planted: distances 0..31 from known rows
    rows = rng.choice(size, 256, replace=False)
    planted = np.stack([flip(words[r], rng, i % 32) for i, r in enumerate(rows)])
    randoms = rng.integers(0, 2**64, size=(4096, 4), dtype=np.uint64)

    def rate(batch: int, queries: np.ndarray) -> float:
        done, i, started = 0, 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            index.search(queries[i:i + batch], 31)
            i = (i + batch) % (len(queries) - batch)
            done += batch
        return done / (time.perf_counter() - started)

    index.search(randoms[:8], 31)  # compile (numba) and plan outside the timing
    per_image = rate(8, randoms)
    batched = rate(256, randoms)
    n_brute = 4 if size >= 5_000_000 else 16
    started = time.perf_counter()
    truth = brute_force_search(words, planted[:n_brute], 31)
    brute = n_brute / (time.perf_counter() - started)
    got = index.search(planted, 31)
    found = set(zip(got.query.tolist(), got.row.tolist(), strict=True))
    planted_found = sum((i, int(r)) in found for i, r in enumerate(rows))
    truth_set = set(zip(truth.query.tolist(), truth.row.tolist(), strict=True))
    agree = truth_set == {p for p in found if p[0] < n_brute}
    print(f"{size:>11,} hashes ({len(index.sizes)} chunks of {index.sizes[-1]}–"
          f"{index.sizes[0]} bits, radii {index.radii(31)}): build {build:5.1f} s, index "
          f"{index.nbytes / 2**20:6.0f} MiB (RSS +{grown:6.0f} MiB, "
          f"{index.nbytes / size:.0f} B/hash); hash lookups/s: {per_image:7.0f} (8 per call = "
          f"{per_image / 8:5.0f} images/s) {batched:7.0f} (batches of 256) vs brute force "
          f"{brute:6.1f} → {per_image / brute:6.0f}x / {batched / brute:6.0f}x; recall "
          f"{planted_found}/{len(rows)} planted at 0..31, brute-force set equal: {agree}")
    del index, words


def _hash_events(chunk: list[bytes]) -> int:
    """Hash encoded images the agent's way (module-level: picklable for the process pool)."""
    hasher = _pool_hasher()
    for data in chunk:
        hasher.signals(_fetched(data))
    return len(chunk)


_HASHER: ImageHasher | None = None


def _pool_hasher() -> ImageHasher:
    global _HASHER
    if _HASHER is None:
        empty = BankIndex()
        _HASHER = ImageHasher(lambda: empty, DecodeLimits())
    return _HASHER


def _fetched(data: bytes) -> Fetched:
    return Fetched(CloudEvent(specversion="1.0", id="b", source="bench",
                              type="forum.image.uploaded",
                              data=ImageData(image_id="b", author=Account(id="u"),
                                             data_b64=data)), data)


def bench_pool(count: int) -> None:
    """1 thread vs 2 threads vs 2 processes, same images, same work (item f)."""
    from concurrent.futures import ProcessPoolExecutor

    from bench.classify import jpeg_images

    images = jpeg_images(count)
    print(f"== hashing {len(images)} 640x480 JPEG photos: threads vs processes")
    _hash_events(images[:4])
    started = time.perf_counter()
    _hash_events(images)
    one = len(images) / (time.perf_counter() - started)
    halves = [images[0::2], images[1::2]]
    with ThreadPoolExecutor(2) as threads:
        list(threads.map(_hash_events, [images[:2], images[2:4]]))
        started = time.perf_counter()
        list(threads.map(_hash_events, halves))
        two_threads = len(images) / (time.perf_counter() - started)
    with ProcessPoolExecutor(2) as processes:
        list(processes.map(_hash_events, [images[:2], images[2:4]]))  # start + warm
        started = time.perf_counter()
        # the bytes travel to the worker processes: that cost is part of a pool's price
        list(processes.map(_hash_events, halves))
        two_processes = len(images) / (time.perf_counter() - started)
    print(f"1 thread {one:.0f}/s, 2 threads {two_threads:.0f}/s ({two_threads / one:.2f}x), "
          f"2 processes {two_processes:.0f}/s ({two_processes / one:.2f}x)")


def bench_agent(count: int, threads: int, batch: int) -> None:
    """Images/s through `vigil worker --agents hashing` on the embedded broker vs the same
    hashing in-process on the same threads and batches (item e)."""
    import asyncio
    import os
    import subprocess
    import sys
    import tempfile
    import uuid
    from pathlib import Path

    from bench.classify import count_signals, image_events, jpeg_images, produce_all
    from streams.topics import IMAGES, SIGNALS
    from vigil.broker import EmbeddedBroker, ensure_topics, free_port

    images = jpeg_images(count)
    values = image_events(images)
    print(f"== hashing agent on the embedded broker vs in-process: {len(images)} 640x480 JPEG "
          f"photos, batches of {batch}, {threads} threads")
    def in_process_rate() -> float:
        # as the agent does: one task per image on a pool of `threads`, batch by batch
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(_hash_events, [images[:2]] * threads))
            started = time.perf_counter()
            for start in range(0, len(images), batch):
                list(pool.map(_hash_events, [[data] for data in images[start:start + batch]]))
            return len(images) / (time.perf_counter() - started)

    # measured before and after the agent, the better one counts (load only slows)
    before = in_process_rate()
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        prefix = f"b{uuid.uuid4().hex[:8]}."
        asyncio.run(ensure_topics(broker.bootstrap, prefix=prefix, partitions=6, replication=1))
        asyncio.run(produce_all(broker.bootstrap, IMAGES.full_name(prefix), values))
        env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
        env.update({
            "VIGIL_BROKER": broker.url, "VIGIL_TOPIC_PREFIX": prefix, "VIGIL_DATA_DIR": tmp,
            "VIGIL_WEB_PORT": str(free_port()), "VIGIL_SIGNING_KEY": "bench",
            "VIGIL_BATCH_SIZE": str(batch),
        })
        with open(Path(tmp) / "worker.log", "wb") as log:
            proc = subprocess.Popen(  # noqa: S603
                [sys.executable, "-m", "vigil.cli", "worker", "--agents", "hashing"],
                env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            # backlog: the images were waiting when the worker started (bench.classify's method:
            # signals after the first batch over the time after it); then live: a second copy
            # produced while the worker is warm, timed from producing to the last signal
            counted, t_first, t_last = asyncio.run(count_signals(
                broker.bootstrap, SIGNALS.full_name(prefix), "pdq", len(values), 600))
            backlog = counted / (t_last - t_first) if t_last > t_first else float("nan")
            live = asyncio.run(_timed_agent_run(
                broker.bootstrap, IMAGES.full_name(prefix), SIGNALS.full_name(prefix), values,
                already=len(values)))
        finally:
            proc.terminate()
            proc.wait(30)
    in_process = max(before, in_process_rate())
    print(f"in-process {in_process:.1f} images/s (before {before:.1f}); agent on a backlog "
          f"{backlog:.1f} images/s, ratio {backlog / in_process:.2f}; agent live (produce → last "
          f"signal, producer on the same box) {live:.1f} images/s, ratio {live / in_process:.2f}")


async def _timed_agent_run(bootstrap: str, images_topic: str, signals_topic: str,
                           values: list[bytes], already: int = 0) -> float:
    """Warm the worker with one image, then time producing every image until the last `pdq`
    signal arrives: images/s as a forum would see it (produce + consume + hash + send).
    `already`: pdq signals on the topic before this run."""
    from aiokafka import AIOKafkaConsumer

    from bench.classify import produce_all

    consumer = AIOKafkaConsumer(signals_topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                fetch_max_wait_ms=50)
    await consumer.start()
    marker = b'"detector":"pdq"'

    async def wait_for(total: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while wait_for.seen < total:  # type: ignore[attr-defined]
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {wait_for.seen}/{total} pdq signals")  # type: ignore[attr-defined]
            batches = await consumer.getmany(timeout_ms=100)
            wait_for.seen += sum(  # type: ignore[attr-defined]
                1 for msgs in batches.values() for m in msgs
                if m.value and marker in m.value.replace(b" ", b""))

    wait_for.seen = 0  # type: ignore[attr-defined]
    try:
        await produce_all(bootstrap, images_topic, values[:1])
        await wait_for(already + 1, 180)  # the worker is up, joined, and has hashed once
        started = time.perf_counter()
        await produce_all(bootstrap, images_topic, values)
        await wait_for(already + 1 + len(values), 600)
        return len(values) / (time.perf_counter() - started)
    finally:
        await consumer.stop()


def main() -> None:
    import os

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--skip-images", action="store_true")
    parser.add_argument("--agent", type=int, default=0, metavar="N",
                        help="images through the hashing agent on the embedded broker")
    parser.add_argument("--pool", type=int, default=0, metavar="N",
                        help="images for threads vs processes")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} at start, {os.cpu_count()} cpus")
    if not args.skip_images:
        bench_images(args.images)
    if args.pool:
        bench_pool(args.pool)
    if args.agent:
        bench_agent(args.agent, max(1, min(4, os.cpu_count() or 1)), 500)
    if args.sizes:
        print("== PDQ bank lookups: multi-index hashing vs brute-force popcount (threshold 31)")
        for size in (int(s) for s in args.sizes.split(",")):
            bench_index(size)
    print(f"load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()

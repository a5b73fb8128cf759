"""State size of the burst detectors on 1M accounts / 100k threads (issue 6, "bounded state").

    python -m bench.burst_state

Each scenario drives the pure detectors (the ones the `burst` agent runs per partition) with
synthetic events and measures the Python objects they hold with tracemalloc: once while every
key is inside a window (the worst case) and once after the windows have passed (what stays:
baselines, board profiles, the reporter-accuracy table). The baseline, measured in the same run
and printed as a ratio, is a bare `dict[str, float]` with one entry per key: the least any
keyed state could cost in Python, so the ratio says how much the detectors add on top of
"one number per key". Memory is deterministic (no timing), but allocator details vary a little
between Python versions.
"""

from __future__ import annotations

import gc
import random
import tracemalloc
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from agents.bursts import (
    BurstConfig,
    NewAccountSwarmDetector,
    ReportSurgeDetector,
    ReporterAccuracy,
    TextBrigadeDetector,
    ThreadRaidDetector,
    Watermarked,
)
from streams.events import Account, PostData, ReportData

START = datetime(2025, 2, 3, 12, tzinfo=timezone.utc).timestamp()
OLD = datetime(2020, 1, 1, tzinfo=timezone.utc)
ACCOUNTS, THREADS, BOARDS = 1_000_000, 100_000, 50
MIB = 2**20


def traced(*phases: Callable[[], Any]) -> list[int]:
    """Bytes held after each phase, all traced in one session (what a phase frees counts)."""
    gc.collect()
    tracemalloc.start()
    sizes = []
    for phase in phases:
        phase()
        gc.collect()
        sizes.append(tracemalloc.get_traced_memory()[0])
    tracemalloc.stop()
    return sizes


def baseline(keys: int, prefix: str) -> int:
    """Bytes of a bare dict[str, float] with `keys` entries: the reference."""
    held: list[dict[str, float]] = []
    return traced(lambda: held.append({f"{prefix}{i}": float(i) for i in range(keys)}))[0]


def row(name: str, size: int, keys: int, reference: int, entries: int) -> None:
    print(f"{name:<62} {size / MIB:8.1f} MiB {size / keys:7.0f} B/key "
          f"{size / reference:5.1f}x bare dict   ({entries:,} state entries)")


def post(i: int, thread: int, author: int, at: float, created: datetime = OLD) -> PostData:
    return PostData(post_id=f"p{i}", thread_id=f"t{thread}", board=f"b{thread % BOARDS}",
                    author=Account(id=f"u{author}", created_at=created), body="")


def thread_raid(rng: random.Random) -> None:
    config = BurstConfig()
    runner = Watermarked([ThreadRaidDetector(config)], config)

    def build() -> Watermarked:
        # 100k threads each posted in twice within one 5-min window, by any of 1M accounts
        for i in range(2 * THREADS):
            at = START + i * 240 / (2 * THREADS)
            runner.observe(post(i, i % THREADS, rng.randrange(ACCOUNTS), at), at)
        entries.append(runner.state_size())
        return runner

    def after() -> Watermarked:
        runner.observe(post(-1, 0, 0, START + 3600), START + 3600)  # windows passed
        runner.advance(force=True)
        entries.append(runner.state_size())
        return runner

    entries: list[int] = []
    full, later = traced(build, after)
    reference = baseline(THREADS, "t")
    row("thread_raid: 100k threads, 200k posts inside the window", full, THREADS, reference,
        entries[0])
    row("  … an hour later (windows empty: baselines, board profiles)", later, THREADS,
        reference, entries[1])


def report_surge() -> None:
    config = BurstConfig()
    accuracy = ReporterAccuracy()
    runner = Watermarked([ReportSurgeDetector(config, accuracy)], config)

    def build() -> Watermarked:
        for i in range(ACCOUNTS):  # 1M distinct reporters on 100k targets in one window
            at = START + i * 500 / ACCOUNTS
            runner.observe(ReportData(report_id=f"r{i}", target_type="post",
                                      target_id=f"p{i % THREADS}",
                                      reporter=Account(id=f"u{i}", created_at=OLD)), at)
        entries.append(runner.state_size() + accuracy.size())
        return runner

    def reviewed() -> Watermarked:
        for t in range(THREADS):  # every target reviewed: 1M reporters get counts
            accuracy.reviewed(f"p{t}", "restore" if t % 2 else "confirm")
        runner.observe(ReportData(report_id="late", target_type="post", target_id="x",
                                  reporter=Account(id="x")), START + 3600)
        runner.advance(force=True)
        entries.append(runner.state_size() + accuracy.size())
        return runner

    entries: list[int] = []
    full, later = traced(build, reviewed)
    reference = baseline(ACCOUNTS, "u")
    row("report_surge: 1M reporters on 100k targets inside the window", full, ACCOUNTS,
        reference, entries[0])
    row("  … all reviewed, an hour later (reporter accuracy only)", later, ACCOUNTS,
        reference, entries[1])


def swarm() -> None:
    config = BurstConfig()
    runner = Watermarked([NewAccountSwarmDetector(config)], config)
    young = datetime.fromtimestamp(START - 3600, timezone.utc)
    keys = 50_000

    def build() -> Watermarked:
        for i in range(keys):  # 50k young accounts posting within one window, 50 boards
            at = START + i * 500 / keys
            runner.observe(post(i, i, i, at, created=young), at)
        return runner

    size, = traced(build)
    row("new_account_swarm: 50k young accounts inside the window", size, keys,
        baseline(keys, "u"), runner.state_size())


def text_brigade(rng: random.Random) -> None:
    config = BurstConfig()
    runner = Watermarked([TextBrigadeDetector(config)], config)
    words = [f"w{i}" for i in range(3000)]
    keys = 20_000

    def build() -> Watermarked:
        for i in range(keys):  # 20k posts in one 30-min window (≈ 11 posts/s)
            data = PostData(post_id=f"p{i}", thread_id=f"t{i}", board="b1",
                            author=Account(id=f"u{i}"), body=" ".join(rng.choices(words, k=20)))
            runner.observe(data, START + i / 11)
        return runner

    size, = traced(build)
    row("text_brigade: 20k posts inside the window (MinHash LSH)", size, keys,
        baseline(keys, "p"), runner.state_size())


def main() -> None:
    rng = random.Random(2)
    print("burst state (tracemalloc; ratio = bytes / a bare dict[str, float] of the same keys)")
    thread_raid(rng)
    report_surge()
    swarm()
    text_brigade(rng)


if __name__ == "__main__":
    main()

"""What burst checkpoints cost, on the harness's simulated forum (docs/burst.md "State").

    python -m bench.burst_checkpoint [--days 2] [--seed 1] [--every-minutes 30]

Feeds the simulated traffic (`bench.burst_eval`: the same bytes, the same detector groups as
the in-process mode) and, every `--every-minutes` of event time, snapshots each group the way
the agent does (`agents.bursts.checkpoint.Snapshots`: pickle, zlib, HMAC). Printed per group,
against baselines measured in the same run: checkpoint bytes over the input bytes of the same
interval (what the checkpoints add to the broker, which keeps everything: DESIGN §1), and the
time to write one and to load one over the time the detectors took for that interval's input
(which is also what re-reading one interval costs after a restart).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict

from agents.bursts import (
    BurstConfig,
    ImageSprayDetector,
    NewAccountSwarmDetector,
    ReporterAccuracy,
    ReportSurgeDetector,
    TextBrigadeDetector,
    TextSignatures,
    ThreadRaidDetector,
    Watermarked,
)
from agents.bursts.checkpoint import Snapshots
from agents.policy import load_default_policy
from bench.burst_eval import DAY, START, Scale, build
from streams.codec import decode
from streams.topics import POSTS, REPORTS, SIGNALS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--every-minutes", type=float, default=30.0)
    args = parser.parse_args()
    every = args.every_minutes * 60

    config = BurstConfig.from_policy(load_default_policy())
    accuracy = ReporterAccuracy()
    text = config.thresholds.text_brigade
    signatures = TextSignatures(text.num_perm, text.shingle)
    snapshots = Snapshots(b"bench-key")
    for name, obj in (("config", config), ("accuracy", accuracy), ("signatures", signatures)):
        snapshots.share(name, obj)
    groups = {
        "reports": Watermarked([ReportSurgeDetector(config, accuracy)], config),
        "threads": Watermarked([ThreadRaidDetector(config)], config),
        "boards": Watermarked([NewAccountSwarmDetector(config),
                               TextBrigadeDetector(config, signatures)], config),
        "images": Watermarked([ImageSprayDetector(config)], config),
    }
    streams = {REPORTS.name: ("reports",), POSTS.name: ("threads", "boards"),
               SIGNALS.name: ("images",)}
    messages, _, _ = build(Scale(days=args.days), args.seed)

    input_bytes: dict[str, int] = defaultdict(int)  # this interval's, per group
    work: dict[str, float] = defaultdict(float)  # the detectors' time for this interval
    sizes: dict[str, list[int]] = defaultdict(list)
    per_byte, write, load = defaultdict(list), defaultdict(list), defaultdict(list)
    end = START + args.days * DAY  # the sentinels after the week are not traffic
    next_at = START + every
    for message in messages:
        event = decode(message.spec, message.value)
        at = event.time.timestamp()  # type: ignore[union-attr] - the simulator sets it
        if at >= end:
            break
        if at >= next_at:
            for name, group in groups.items():
                started = time.perf_counter()
                blob = snapshots.dump(0, group)
                dumped = time.perf_counter()
                assert snapshots.load(blob) is not None
                loaded = time.perf_counter()
                sizes[name].append(len(blob))
                if input_bytes[name] and work[name]:
                    per_byte[name].append(len(blob) / input_bytes[name])
                    write[name].append((dumped - started) / work[name])
                    load[name].append((loaded - dumped) / work[name])
                input_bytes[name], work[name] = 0, 0.0
            next_at += every
        for name in streams[message.spec.name]:
            started = time.perf_counter()
            groups[name].observe(event.data, at)
            work[name] += time.perf_counter() - started
            input_bytes[name] += len(message.value)

    print(f"{args.days:g} simulated days, seed {args.seed}, a checkpoint every "
          f"{args.every_minutes:g} min of event time ({len(sizes['threads'])} per group); "
          "medians of the per-interval ratios")
    print(f"{'group':<8} {'size p50':>9} {'size max':>9} {'÷ input bytes':>13} "
          f"{'write ÷ detect':>14} {'load ÷ detect':>13}")
    for name in groups:
        print(f"{name:<8} {statistics.median(sizes[name]) / 1024:7.0f} K "
              f"{max(sizes[name]) / 1024:7.0f} K {statistics.median(per_byte[name]):13.2f} "
              f"{statistics.median(write[name]):14.2f} {statistics.median(load[name]):13.2f}")


if __name__ == "__main__":
    main()

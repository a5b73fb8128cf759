"""The load bench's traffic through the pure burst detectors, in-process: no broker (issue 9).

`bench.load` (20 000 threads, 20 000 authors, 10 boards, ≈ 90 % posts) raised 5 142
`thread_raid` alert events in a 20-minute run. This replays the very events it produces
(`bench.load.Traffic.build`, same seed, same order) through the burst agent's detector groups
for posts (`thread_raid`; `new_account_swarm`, fed the same posts in order) and reports, under
the shipped policy, one partition per stream as `bench.burst_eval`'s in-process mode, and counts
the alert events per kind and step (opened, update, resolved), so the cause can be told apart
without starting Vigil. `text_brigade` (MinHash: minutes of CPU for this many posts; the bench's
bodies are random words) and `image_spray` are left out:

- `--event-time as-sent`: the bench's bytes unchanged. Its CloudEvents all carry the same
  `time` (`tests.integration.helpers.cloud_event`), so in event time the whole run is one
  instant and every window holds every post the thread ever got.
- `--event-time paced`: `time` = the moment the event is due at `--rate`, as a forum stamps it.
- `--authors anonymous`: as the bench sends them, without `created_at`;
  `--authors members`: every account created a year before the run.

Images are skipped (burst reads the hashing role's `pdq` signals, not images); the posts and
reports are exactly the bench's. Run from the repository root::

    PYTHONPATH=. .venv/bin/python -m bench.load_bursts --rate 250 --seconds 1200 \\
        --event-time paced --authors anonymous
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from datetime import datetime, timedelta

import orjson

from agents.bursts import (
    BurstConfig,
    NewAccountSwarmDetector,
    ReportSurgeDetector,
    ThreadRaidDetector,
    Watermarked,
)
from agents.policy import load_default_policy
from bench.burst_wire import Message
from bench.load import Traffic
from streams.codec import decode
from streams.events import AlertData
from streams.topics import POSTS, REPORTS
from tests.integration.helpers import cloud_event

#: The `time` every event of the load bench carries.
BENCH_TIME = datetime.fromisoformat(cloud_event("-", {})["time"])
_SPECS = {POSTS.full_name(""): POSTS, REPORTS.full_name(""): REPORTS}


def messages(rate: float, seconds: float, paced: bool, members: bool) -> list[Message]:
    """The posts and reports `bench.load` sends in `seconds` at `rate` events/s, in order."""
    traffic = Traffic(producer=None, prefix="",  # type: ignore[arg-type] - build never sends
                      forum_like=False)  # the bytes session 3's run sent; stamped below
    created = (BENCH_TIME - timedelta(days=365)).isoformat()
    out = []
    for n in range(int(rate * seconds)):
        topic, key, value, _ = traffic.build(traffic._kind(), "")
        spec = _SPECS.get(topic)
        if spec is None:
            continue  # an image
        if paced or members:
            event = orjson.loads(value)
            if paced:
                event["time"] = (BENCH_TIME + timedelta(seconds=n / rate)).isoformat()
            if members:
                for role in ("author", "reporter"):
                    if role in event["data"]:
                        event["data"][role]["created_at"] = created
            value = orjson.dumps(event)
        out.append(Message(spec, key, value))
    return out


def detect(inputs: list[Message], config: BurstConfig) -> list[AlertData]:
    """Each input, decoded, at its CloudEvent `time`, through its stream's detector groups."""
    groups = {POSTS.name: [Watermarked([ThreadRaidDetector(config)], config),
                           Watermarked([NewAccountSwarmDetector(config)], config)],
              REPORTS.name: [Watermarked([ReportSurgeDetector(config)], config)]}
    alerts: list[AlertData] = []
    for message in inputs:
        event = decode(message.spec, message.value)
        at = event.time.timestamp()  # type: ignore[union-attr] - cloud_event always sets it
        for group in groups[message.spec.name]:
            alerts += group.observe(event.data, at)
    return alerts


def step(alert: AlertData) -> str:
    """opened, update or resolved, from the alert id's suffix (`Incidents._send`)."""
    label = alert.alert_id.rsplit("-", 1)[1]
    return "resolved" if label == "resolved" else "opened" if label == "u0" else "update"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=250.0, help="events/s (bench.load --rate)")
    parser.add_argument("--seconds", type=float, default=1200.0)
    parser.add_argument("--event-time", choices=("as-sent", "paced"), default="as-sent")
    parser.add_argument("--authors", choices=("anonymous", "members"), default="anonymous")
    args = parser.parse_args()
    started = time.process_time()
    inputs = messages(args.rate, args.seconds, args.event_time == "paced",
                      args.authors == "members")
    alerts = detect(inputs, BurstConfig.from_policy(load_default_policy()))
    print(f"{len(inputs):,} posts and reports at {args.rate:g}/s for {args.seconds:g} s, "
          f"event time {args.event_time}, authors {args.authors}: {len(alerts):,} alert events "
          f"(CPU {time.process_time() - started:.0f} s)")
    for (kind, name), count in sorted(Counter((a.kind, step(a)) for a in alerts).items()):
        print(f"  {kind:18} {name:9} {count:7,}")
    per_incident = Counter(Counter(a.dedup_key for a in alerts).values())
    if per_incident:
        print(f"  alert events per incident: {dict(sorted(per_incident.items()))}")


if __name__ == "__main__":
    main()

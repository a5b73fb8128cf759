"""The burst role through the real broker: thresholds from the policy file, reporter accuracy
from reviews, and a policy edit followed without a restart."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest

from streams.topics import ALERTS, REPORTS, REVIEWS
from tests.integration.helpers import (
    Worker,
    cloud_event,
    collect,
    http,
    produce,
    running,
    topic,
    unique_prefix,
    vigil_env,
)
from vigil.broker import EmbeddedBroker

pytestmark = pytest.mark.integration
OLD = "2020-01-01T00:00:00Z"
NOON = "2025-02-04T14:{:02d}:{:02d}Z"  # staffed in the default hours (08–22 UTC)
POLICY = """version = "burst-it-{version}"
[staffed_hours]
start = "08:00"
end = "22:00"
[burst.report_surge]
min_weight = {min_weight}
"""


def report(target: str, reporter: str, minute: int, second: int = 0) -> bytes:
    return json.dumps(cloud_event("forum.report.created", {
        "report_id": f"r-{target}-{reporter}", "target_type": "post", "target_id": target,
        "reporter": {"id": reporter, "created_at": OLD},
    }, time=NOON.format(minute, second))).encode()


def review(content_id: str, outcome: str) -> bytes:
    return json.dumps(cloud_event("safety.review", {
        "decision_id": f"dec-{content_id}", "outcome": outcome, "content_id": content_id,
    })).encode()


def surges(events: list[dict[str, Any]]) -> set[str]:
    return {e["data"]["target"]["id"] for e in events if e["data"]["kind"] == "report_surge"}


async def metric(worker: Worker, pattern: str, at_least: float) -> None:
    """Wait until the worker's /metrics shows `pattern`'s value ≥ `at_least`."""
    for _ in range(600):
        _, body = await asyncio.to_thread(http, "GET", worker.url("/metrics"))
        found = re.search(pattern + r" ([0-9.e+]+)", body.decode())
        if found and float(found.group(1)) >= at_least:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{pattern} never reached {at_least}:\n" + worker.log()[-3000:])


async def test_policy_thresholds_reviews_and_reload(broker: EmbeddedBroker,
                                                   tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY.format(version=1, min_weight=3))
    # One partition: total order, so a later surge proves every earlier report was processed.
    env = vigil_env(broker.url, unique_prefix(), tmp_path, VIGIL_TOPIC_PARTITIONS="1",
                    VIGIL_POLICY=str(policy), VIGIL_POLICY_RELOAD_SECONDS="0.2")
    with running(["worker", "--agents", "burst"], env, tmp_path) as worker:
        reports, alerts = topic(worker, REPORTS), topic(worker, ALERTS)
        # 1. the file's threshold: 3 established members are a surge (the default needs 5)
        await produce(broker.bootstrap, reports, [report("p-three", f"m{i}", 0, i)
                                                  for i in range(3)])
        await collect(broker.bootstrap, alerts, lambda es: "p-three" in surges(es))

        # 2. four members whose reports moderators restored twice weigh 4 × 0.67 < 3
        crew = [f"crew{i}" for i in range(4)]
        await produce(broker.bootstrap, reports, [report(f"p-old{n}", who, 1, n)
                                                  for n in range(2) for who in crew])
        # reports and reviews are two topics (no order between them): the reviews go in once
        # the reports are counted (3 targets and their 3 + 4 + 4 votes)
        await metric(worker, r'vigil_burst_state_keys\{agent="detect_report_surges"\}', 14)
        await produce(broker.bootstrap, topic(worker, REVIEWS),
                      [review(f"p-old{n}", "restore") for n in range(2)])
        # the accuracy table: 3 targets, and counts for the 4 crew members
        await metric(worker, r'vigil_burst_state_keys\{agent="learn_reporter_accuracy"\}', 7)
        await produce(broker.bootstrap, reports,
                      [report("p-crew", who, 2, i) for i, who in enumerate(crew)]
                      + [report("p-members", f"member{i}", 3, i) for i in range(4)])
        events = await collect(broker.bootstrap, alerts, lambda es: "p-members" in surges(es))
        assert "p-crew" not in surges(events)

        # 3. an edit of the file applies without a restart: now 3 members are not enough
        policy.write_text(POLICY.format(version=2, min_weight=8))
        for _ in range(600):  # logged once every detector group has the new thresholds
            if "thresholds of policy burst-it-2 in force" in worker.log():
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("policy not reloaded:\n" + worker.log()[-3000:])
        await produce(broker.bootstrap, reports,
                      [report("p-three-again", f"n{i}", 4, i) for i in range(3)]
                      + [report("p-eight", f"e{i}", 5, i) for i in range(8)])
        events = await collect(broker.bootstrap, alerts, lambda es: "p-eight" in surges(es))
        assert "p-three-again" not in surges(events)
        assert len({e["data"]["dedup_key"] for e in events
                    if e["data"]["target"]["id"] == "p-three"}) == 1

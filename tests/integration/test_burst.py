"""Burst detection end to end: a `vigil worker --agents burst` against the real embedded broker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streams.topics import ALERTS, REPORTS
from tests.integration.helpers import (
    Worker,
    cloud_event,
    collect,
    produce,
    start_vigil,
    topic,
    unique_prefix,
    vigil_env,
    wait_ready,
)
from vigil.broker import EmbeddedBroker

pytestmark = pytest.mark.integration
OLD = "2020-01-01T00:00:00Z"  # established accounts: full trust weight


def report(report_id: str, target: str, reporter: str, time: str) -> bytes:
    return json.dumps(cloud_event("forum.report.created", {
        "report_id": report_id, "target_type": "post", "target_id": target, "thread_id": "t1",
        "reporter": {"id": reporter, "created_at": OLD}, "reason": "spam",
    }, time=time)).encode()


@pytest.fixture(scope="module")
def worker(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    data_dir: Path = tmp_path_factory.mktemp("vigil-burst")
    # One partition: total order, so a later marker proves every earlier report was processed.
    env = vigil_env(broker.url, unique_prefix(), data_dir, VIGIL_TOPIC_PARTITIONS="1")
    running = start_vigil(["worker", "--agents", "burst"], env, data_dir)
    try:
        wait_ready(running)
        yield running
    finally:
        running.stop()


def surge_of(target: str, resolved: bool = False) -> Any:
    def done(events: list[dict[str, Any]]) -> bool:
        return any(e["data"]["kind"] == "report_surge" and e["data"]["target"]["id"] == target
                   and bool(e["data"]["evidence"].get("resolved")) == resolved for e in events)
    return done


async def test_report_surge_alerts_once_and_ordinary_reports_do_not(
    worker: Worker, broker: EmbeddedBroker
) -> None:
    reports = topic(worker, REPORTS)
    # Ordinary traffic (14:00 UTC, staffed): one or two reporters per post, a repeat reporter.
    ordinary = [report(f"o{i}", f"p-ordinary-{i % 3}", f"member-{i}", "2025-02-04T14:00:00Z")
                for i in range(5)]
    ordinary += [report(f"o-rep{i}", "p-repeated", "member-x", f"2025-02-04T14:00:{i:02d}Z")
                 for i in range(8)]  # one reporter eight times counts once
    # The surge: 6 distinct reporters on one post within a minute of event time.
    surge = [report(f"s{i}", "p-surge", f"reporter-{i}", f"2025-02-04T14:01:{i * 10:02d}Z")
             for i in range(6)]
    await produce(broker.bootstrap, reports, ordinary + surge)
    await collect(broker.bootstrap, topic(worker, ALERTS), surge_of("p-surge"))

    # A marker an hour later (event time) moves the watermark: the surge resolves, and every
    # earlier report has been processed by the time the marker's own surge shows up.
    marker = [report(f"m{i}", "p-marker", f"reporter-{i}", f"2025-02-04T15:01:{i:02d}Z")
              for i in range(6)]
    await produce(broker.bootstrap, reports, marker)
    alerts = await collect(broker.bootstrap, topic(worker, ALERTS),
                           lambda es: surge_of("p-marker")(es) and surge_of("p-surge", True)(es))

    data = [e["data"] for e in alerts]
    surge_alerts = [d for d in data if d["target"] and d["target"]["id"] == "p-surge"]
    assert {d["dedup_key"] for d in surge_alerts} == {
        "report_surge:post:p-surge:20250204T140100Z"}
    assert all(d["kind"] == "report_surge" for d in surge_alerts)
    opened = surge_alerts[0]
    assert opened["count"] >= 5 and opened["first_seen"].startswith("2025-02-04T14:01:00")
    resolved = [d for d in surge_alerts if d["evidence"].get("resolved")]
    assert len(resolved) == 1 and resolved[0]["count"] == 6
    assert len({d["alert_id"] for d in surge_alerts}) == len(surge_alerts)  # distinct updates
    assert not [d for d in data if d["target"] and d["target"]["id"] in
                ("p-ordinary-0", "p-ordinary-1", "p-ordinary-2", "p-repeated")]
    # ids are derived from the incident: the CloudEvent id is the alert id (replays dedup)
    assert all(e["id"] == e["data"]["alert_id"] for e in alerts)

"""Mass false reporting (`report_brigade`) through the broker: twelve day-old accounts reporting
one post fire once, and their low trust keeps them from raising a `report_surge` (the swarm
cannot get the post hidden); a few young reporters, a mixed crowd and one repeat reporter do
not fire anything."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.integration.helpers import (
    assert_one_incident,
    at,
    forum_report,
    member,
    resolved,
    run_burst,
    same_alerts,
)
from vigil.broker import EmbeddedBroker

pytestmark = pytest.mark.integration


def inputs() -> list[Any]:
    fresh = at(0) - timedelta(hours=3)  # trust weight 0.2, "young" (< 7 days)
    reports: list[tuple[float, str, dict[str, Any]]] = []
    # Normal: five young reporters (brigade needs eight); three members (weight 3 < 5);
    # three members and six young accounts (weight 4.2 < 5; 67 % young < 70 %);
    # one young account reporting ten times (one voice).
    reports += [(i * 30, "p-a", member(f"young-a{i}", fresh)) for i in range(5)]
    reports += [(5 + i * 30, "p-b", member(f"old-b{i}")) for i in range(3)]
    reports += [(7 + i * 20, "p-c", member(f"old-c{i}")) for i in range(3)]
    reports += [(9 + i * 20, "p-c", member(f"young-c{i}", fresh)) for i in range(6)]
    reports += [(11 + i * 10, "p-d", member("young-d", fresh)) for i in range(10)]
    # The brigade: twelve accounts three hours old report one post within four minutes.
    reports += [(60 + i * 20, "p-victim", member(f"young-v{i}", fresh)) for i in range(12)]
    reports.sort(key=lambda r: r[0])
    events = [forum_report(f"r{n}", target, who, at(when))
              for n, (when, target, who) in enumerate(reports)]
    return events + [forum_report("r-marker", "p-marker", member("old-m"), at(3600))]


@pytest.fixture(scope="module")
def first_run(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory
              ) -> list[dict[str, Any]]:
    return run_burst(broker.url, broker.bootstrap, tmp_path_factory.mktemp("mass-report"),
                     inputs(), resolved("report_brigade", "p-victim"))


def test_mass_false_reporting_fires_once_and_no_surge_hides_the_post(
    first_run: list[Any]
) -> None:
    data = assert_one_incident(first_run, "report_brigade")  # and no report_surge at all
    assert {d["target"]["id"] for d in data} == {"p-victim"}
    opened = data[0]
    assert opened["count"] == 8 and opened["first_seen"].startswith("2025-02-04T14:01:00")
    assert opened["evidence"]["young_reporters"] == 8
    assert data[-1]["count"] == 12


def test_replay_on_a_fresh_worker_gives_the_same_alerts(
    first_run: list[Any], broker: EmbeddedBroker, tmp_path: Path
) -> None:
    again = run_burst(broker.url, broker.bootstrap, tmp_path, inputs(),
                      resolved("report_brigade", "p-victim"))
    same_alerts(first_run, again)

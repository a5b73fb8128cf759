"""`report_surge` as one incident through the broker, and its replay on a fresh worker.

(`test_burst.py` covers the surge's resolve by a later marker and ordinary reports; this
module checks the incident lifecycle and that a replay gives the very same alerts.)
"""

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
    three_days_old = at(0) - timedelta(days=3)  # trust weight 0.5, too few for a brigade
    reports: list[tuple[float, str, dict[str, Any]]] = []
    # Normal: four members (weight 4 < 5); six three-day-old accounts (weight 3); one member
    # reporting eight times (one voice).
    reports += [(i * 30, "p-a", member(f"old-a{i}")) for i in range(4)]
    reports += [(5 + i * 20, "p-b", member(f"young-b{i}", three_days_old)) for i in range(6)]
    reports += [(7 + i * 10, "p-c", member("old-c")) for i in range(8)]
    # The surge: twelve members report one post within four minutes.
    reports += [(60 + i * 20, "p-surge", member(f"old-s{i}")) for i in range(12)]
    reports.sort(key=lambda r: r[0])
    events = [forum_report(f"r{n}", target, who, at(when))
              for n, (when, target, who) in enumerate(reports)]
    return events + [forum_report("r-marker", "p-marker", member("old-m"), at(3600))]


@pytest.fixture(scope="module")
def first_run(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory
              ) -> list[dict[str, Any]]:
    return run_burst(broker.url, broker.bootstrap, tmp_path_factory.mktemp("surge"), inputs(),
                     resolved("report_surge", "p-surge"))


def test_a_surge_fires_once_and_grows_as_documented(first_run: list[Any]) -> None:
    data = assert_one_incident(first_run, "report_surge")
    assert {d["target"]["id"] for d in data} == {"p-surge"}
    assert data[0]["count"] == 5 and data[0]["first_seen"].startswith("2025-02-04T14:01:00")
    # grown by half (5 → 8 → 12), and "high" from a trust-weighted 10 on
    assert [d["severity"] for d in data][-1] == "high" and data[-1]["count"] == 12


def test_replay_on_a_fresh_worker_gives_the_same_alerts(
    first_run: list[Any], broker: EmbeddedBroker, tmp_path: Path
) -> None:
    again = run_burst(broker.url, broker.bootstrap, tmp_path, inputs(),
                      resolved("report_surge", "p-surge"))
    same_alerts(first_run, again)

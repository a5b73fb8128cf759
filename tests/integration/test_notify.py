"""Notify through the real broker to a real Prometheus Alertmanager (Debian's
`prometheus-alertmanager`, started here on random ports, clustering off, temp storage).

A banned image becomes a `hash_match` alert in Alertmanager with the contract's labels; alerts
raised while Alertmanager is down all arrive once it is back.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from streams.codec import encode
from streams.events import AlertData, Target
from streams.topics import ALERTS, IMAGES
from tests.integration.helpers import (
    Worker,
    http,
    image_event,
    produce,
    start_vigil,
    topic,
    unique_prefix,
    vigil_env,
    wait_ready,
)
from tests.integration.test_pipeline import drawn_png
from vigil.broker import EmbeddedBroker, free_port

pytestmark = pytest.mark.integration
BINARY = "prometheus-alertmanager"
CONFIG = 'route:\n  receiver: "null"\nreceivers:\n  - name: "null"\n'
BANNED = drawn_png(23)


class Alertmanager:
    """One Alertmanager process on a fixed port (so it can be stopped and started again)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (workdir / "am.yml").write_text(CONFIG)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Alertmanager:
        log = open(self.workdir / "alertmanager.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(  # noqa: S603
            [BINARY, f"--config.file={self.workdir / 'am.yml'}",
             f"--storage.path={self.workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address="],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if http("GET", self.url + "/-/ready")[0] == 200:
                    return self
            except OSError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError("alertmanager did not start:\n"
                             + (self.workdir / "alertmanager.log").read_text())

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def alerts(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(self.url + "/api/v2/alerts", timeout=5) as resp:  # noqa: S310
            result: list[dict[str, Any]] = json.loads(resp.read())
            return result

    def wait_for(self, dedup_keys: set[str], timeout: float = 60) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            alerts = self.alerts()
            if dedup_keys <= {a["labels"].get("dedup_key") for a in alerts}:
                return alerts
            if time.monotonic() > deadline:
                raise AssertionError(f"missing {dedup_keys}; got {json.dumps(alerts)[:2000]}")
            time.sleep(0.2)


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Alertmanager]:
    if shutil.which(BINARY) is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{BINARY} is not installed; .ci/run installs it (apt-get)")
        pytest.skip(f"{BINARY} not installed (apt-get install prometheus-alertmanager)")
    am = Alertmanager(tmp_path_factory.mktemp("alertmanager")).start()
    try:
        yield am
    finally:
        am.stop()


@pytest.fixture(scope="module")
def worker(broker: EmbeddedBroker, alertmanager: Alertmanager,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    data_dir: Path = tmp_path_factory.mktemp("vigil-notify")
    banks = data_dir / "banks"
    banks.mkdir()
    (banks / "b.csv").write_text(
        "signal_type,signal,bank,label,severity\n"
        f"sha256,{hashlib.sha256(BANNED).hexdigest()},test-bank,csam,critical\n")
    env = vigil_env(broker.url, unique_prefix(), data_dir,
                    VIGIL_ALERTMANAGER_URL=alertmanager.url,
                    VIGIL_NOTIFY_RETRY_INITIAL_SECONDS="0.2",
                    VIGIL_NOTIFY_RETRY_MAX_SECONDS="1")
    running = start_vigil(["worker", "--agents", "intake,hashing,decide,notify"], env, data_dir)
    try:
        wait_ready(running)
        yield running
    finally:
        running.stop()


def metric(worker: Worker, name: str, labels: str) -> float:
    _, body = http("GET", worker.url("/metrics"))
    for line in body.decode().splitlines():
        if line.startswith(name + "{") and labels in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_hash_match_reaches_alertmanager_with_the_contract_labels(
        worker: Worker, broker: EmbeddedBroker, alertmanager: Alertmanager) -> None:
    await produce(broker.bootstrap, topic(worker, IMAGES),
                  [json.dumps(image_event("img-am", BANNED)).encode()])
    alerts = alertmanager.wait_for({"hash_match:image:img-am"})
    alert = next(a for a in alerts if a["labels"]["dedup_key"] == "hash_match:image:img-am")
    assert alert["labels"] == {"alertname": "hash_match", "severity": "critical",
                               "target_id": "img-am", "dedup_key": "hash_match:image:img-am"}
    assert "test-bank" in alert["annotations"]["summary"]
    assert alert["annotations"]["runbook_url"] == "docs/runbook.md#hash_match"
    assert alert["status"]["state"] == "active"
    assert hashlib.sha256(BANNED).hexdigest() not in json.dumps(alert)


async def test_alerts_raised_while_alertmanager_is_down_all_arrive(
        worker: Worker, broker: EmbeddedBroker, alertmanager: Alertmanager) -> None:
    alertmanager.stop()
    now = datetime.now(timezone.utc)
    keys = {f"thread_raid:thread:t-{i}" for i in range(3)}
    records = [encode(ALERTS, AlertData(
        alert_id=f"alr-outage-{i}", kind="thread_raid", severity="critical",
        summary=f"raid on thread t-{i}", target=Target(type="thread", id=f"t-{i}"),
        first_seen=now, last_seen=now, dedup_key=f"thread_raid:thread:t-{i}",
        runbook_url="docs/runbook.md#thread_raid"), source="test/burst")
        for i in range(3)]
    for key, value in records:
        await produce(broker.bootstrap, topic(worker, ALERTS), [value], key=key)
    # wait until notify has tried and failed at least once (the outage is real to it)
    deadline = time.monotonic() + 60
    while metric(worker, "vigil_pager_deliveries_total",
                 'destination="alertmanager",outcome="retry"') < 1:
        assert time.monotonic() < deadline, worker.log()
        time.sleep(0.2)
    alertmanager.start()  # same port; Alertmanager keeps no alerts across restarts
    alerts = alertmanager.wait_for(keys)
    assert {a["labels"]["alertname"] for a in alerts
            if a["labels"]["dedup_key"] in keys} == {"thread_raid"}

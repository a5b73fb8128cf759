"""Regression through the real broker: content another decide worker decided gets no second
verdict from this one.

After a rebalance, hashing on the partition's new owner re-emits signals for an image the old
owner's decide had already decided; the new decide owner opened a window for it and held it at
the deadline for the detectors that never came again — a second verdict, another decision id
(tests/integration/test_faults.py caught it intermittently). Here the test plays the other
worker: it publishes the verdict for image X *after* the decide worker started (so the worker
can only know it by tailing the verdicts topic), then the late duplicate signal for X, then a
marker signal for image Y on the same single partition. Y's window opens after X's, so by the
time Y is held at its deadline, X's window has been dropped or decided.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.codec import encode
from streams.events import SignalData, VerdictData
from streams.signing import Signer
from streams.topics import SIGNALS, VERDICTS
from tests.integration.helpers import (
    SIGNING_KEY,
    SIGNING_KEY_ID,
    collect,
    http,
    policy_text,
    produce,
    running,
    topic,
    unique_prefix,
    vigil_env,
)
from vigil.broker import EmbeddedBroker

pytestmark = pytest.mark.integration


def hash_signal(image_id: str) -> tuple[bytes | None, bytes]:
    """One of hashing's signals, re-emitted without the others nor intake's."""
    return encode(SIGNALS, SignalData(
        detector="sha256", detector_version="test-1", content_type="image",
        content_id=image_id, status="clear"), source="vigil/hashing",
        event_id=f"sig-sha256-{image_id}")


async def test_late_signals_for_content_decided_by_another_worker_get_no_second_verdict(
        broker: EmbeddedBroker, tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(policy_text(image=["sha256", "md5", "pdq"], post=[]))
    env = vigil_env(broker.url, unique_prefix(), tmp_path, VIGIL_POLICY=str(policy),
                    VIGIL_TOPIC_PARTITIONS="1", VIGIL_DECIDE_DEADLINE_MS="500")
    with running(["worker", "--agents", "decide"], env, tmp_path) as worker:
        elsewhere = VerdictData(content_type="image", content_id="img-x", verdict="allow",
                                decision_id="dec-from-the-other-worker", policy_version="v")
        key, value = encode(VERDICTS, elsewhere, source="vigil/decide", event_id="vrd-other",
                            signer=Signer(SIGNING_KEY_ID, SIGNING_KEY.encode()))
        await produce(broker.bootstrap, topic(worker, VERDICTS), [value], key=key)
        for image_id in ("img-x", "img-y"):
            key, value = hash_signal(image_id)
            await produce(broker.bootstrap, topic(worker, SIGNALS), [value], key=key)

        verdicts = await collect(broker.bootstrap, topic(worker, VERDICTS), lambda es: any(
            e["data"]["content_id"] == "img-y" for e in es))
        about_x = [e["data"]["decision_id"] for e in verdicts
                   if e["data"]["content_id"] == "img-x"]
        assert about_x == ["dec-from-the-other-worker"]
        held = [e["data"] for e in verdicts if e["data"]["content_id"] == "img-y"]
        assert [v["verdict"] for v in held] == ["hold"]  # the marker: a window that did run
        _, metrics = http("GET", worker.url("/metrics"))
        assert b"vigil_decide_pending 0.0" in metrics  # X's window is gone, not left open

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

import asyncio
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from agents.policy import decision_id, load_policy
from streams.codec import encode
from streams.events import SignalData, VerdictData
from streams.signing import Signer
from streams.topics import SIGNALS, VERDICTS
from tests.integration.helpers import (
    SIGNING_KEY,
    SIGNING_KEY_ID,
    Worker,
    collect,
    http,
    policy_text,
    produce,
    running,
    start_vigil,
    topic,
    unique_prefix,
    vigil_env,
    wait_ready,
)
from tests.integration.test_faults import VerdictWatch, assert_every_input_decided_once
from vigil.broker import EmbeddedBroker, ensure_topics, free_port

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


def clear_signal(detector: str, image_id: str) -> bytes:
    """A clear signal of `detector` for image `image_id` (intake's carries its context)."""
    return encode(SIGNALS, SignalData(
        detector=detector, detector_version="test-1", content_type="image",
        content_id=image_id, post_id=f"post-{image_id}", status="clear"),
        source="vigil/test", event_id=f"sig-{detector}-{image_id}")[1]


async def received_signals(worker: Worker) -> float:
    """Signals this worker's decide loop has consumed so far."""
    series = f'faust_messages_received_per_topic_total{{topic="{topic(worker, SIGNALS)}"}} '
    _, body = await asyncio.to_thread(http, "GET", worker.url("/metrics"))
    return next((float(line.rsplit(" ", 1)[1]) for line in body.decode().splitlines()
                 if line.startswith(series)), 0.0)


async def test_decide_workers_joining_and_leaving_with_open_windows_decide_each_once(
        broker: EmbeddedBroker, tmp_path: Path) -> None:
    """Two `vigil worker --agents decide` share the group; the second joins while the first
    holds 1 500 open windows (md5 not in yet), then the first leaves mid-stream.

    Every image must end with exactly one decision, the `allow` its three clear signals call
    for: a window lost in a rebalance (its held inputs committed, or dropped and not reread)
    would end in a deadline `hold` or no verdict at all; a window kept by the old owner and
    opened again by the new one could end in two decisions.
    """
    policy = tmp_path / "policy.toml"
    policy.write_text(policy_text(image=["sha256", "md5"], post=[]))
    prefix = unique_prefix()
    env = vigil_env(broker.url, prefix, tmp_path, VIGIL_POLICY=str(policy),
                    VIGIL_TOPIC_PARTITIONS="4", VIGIL_DECIDE_DEADLINE_MS="20000")
    await ensure_topics(broker.bootstrap, prefix=prefix, partitions=4)
    signals, version = SIGNALS.full_name(prefix), load_policy(policy).version
    opened = [f"open-{n}" for n in range(1_500)]  # md5 arrives after the join
    later = [f"late-{n}" for n in range(3_000)]  # produced around the leave
    first = start_vigil(["worker", "--agents", "decide"], env, tmp_path / "a")
    workers = [first]
    try:
        await asyncio.to_thread(wait_ready, first)
        async with VerdictWatch(broker.bootstrap, VERDICTS.full_name(prefix)) as watch:
            await produce_all(broker.bootstrap, signals, [
                (image_id, clear_signal(detector, image_id))
                for image_id in opened for detector in ("intake", "sha256")])
            await watch.until(lambda: b"vigil_decide_pending 1500.0" in http(
                "GET", first.url("/metrics"))[1], 120, "1 500 open windows", workers)
            second = start_vigil(["worker", "--agents", "decide"],
                                 {**env, "VIGIL_WEB_PORT": str(free_port()),
                                  "VIGIL_DATA_DIR": str(tmp_path / "b")}, tmp_path / "b")
            workers.append(second)
            await asyncio.to_thread(wait_ready, second)
            # the second worker rereads the held inputs of the partitions it was given
            for _ in range(1200):
                if await received_signals(second) > 0:
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("the second worker never got partitions:\n"
                                     + second.log()[-3000:])
            await produce_all(broker.bootstrap, signals, [
                (image_id, clear_signal("md5", image_id)) for image_id in opened] + [
                (image_id, clear_signal(detector, image_id))
                for image_id in later[: len(later) // 2]
                for detector in ("intake", "sha256", "md5")])
            await watch.until(lambda: len(watch.decisions) >= len(opened) + 200, 120,
                              "the first verdicts after the join", workers)
            first.stop()  # leaves mid-stream: its partitions (and open windows) move
            await produce_all(broker.bootstrap, signals, [
                (image_id, clear_signal(detector, image_id))
                for image_id in later[len(later) // 2:]
                for detector in ("intake", "sha256", "md5")])
            images = opened + later
            await watch.until(lambda: len(watch.decisions) >= len(images), 240,
                              "every verdict", workers)
            assert_every_input_decided_once(watch, images)
            wrong = {i: d for i, d in watch.decisions.items()
                     if d != {decision_id("image", i, "allow", version)}}
            assert wrong == {}, f"{len(wrong)} images not allowed once, e.g. {list(wrong)[:3]}"
    finally:
        for worker in workers:
            worker.stop()


async def produce_all(bootstrap: str, topic_name: str, records: list[tuple[str, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(topic_name, value, key=key.encode())
                   for key, value in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()

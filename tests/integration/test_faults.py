"""Faults with real processes on the real broker: nothing lost, no action doubled in effect.

A worker is killed with SIGKILL in the middle of 10 000 inputs and restarted; workers join and
leave mid-stream (rebalances). Every input must end with a verdict, and every content's verdicts
(redeliveries repeat them) must carry one `decision_id`.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from PIL import Image

from streams.topics import IMAGES, POSTS, VERDICTS
from tests.integration.helpers import (
    Worker,
    cloud_event,
    http,
    policy_text,
    start_vigil,
    unique_prefix,
    vigil_env,
    wait_ready,
)
from vigil.broker import EmbeddedBroker, ensure_topics

pytestmark = pytest.mark.integration
ROLES = "intake,hashing,decide"


def tiny_png(n: int) -> bytes:
    img = Image.new("RGB", (32, 24), (n % 251, (n * 7) % 253, (n * 13) % 255))
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def inputs(tag: str, posts: int, images: int) -> list[tuple[str, bytes, bytes, str]]:
    """(topic name, key, value, content id) for `posts` posts and `images` images."""
    records = []
    for n in range(posts):
        post_id = f"{tag}-p{n}"
        records.append((POSTS.name, f"t{n % 50}".encode(), json.dumps(cloud_event(
            "forum.post.created", {"post_id": post_id, "thread_id": f"t{n % 50}",
                                   "author": {"id": f"u{n % 300}"}, "body": f"post {n}"},
        )).encode(), post_id))
    for n in range(images):
        image_id = f"{tag}-i{n}"
        records.append((IMAGES.name, image_id.encode(), json.dumps(cloud_event(
            "forum.image.uploaded", {"image_id": image_id, "post_id": image_id,
                                     "author": {"id": f"u{n % 300}"},
                                     "data_b64": base64.b64encode(tiny_png(n)).decode()},
        )).encode(), image_id))
    return records


async def produce_all(bootstrap: str, prefix: str,
                      records: list[tuple[str, bytes, bytes, str]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(prefix + topic, value, key=key)
                   for topic, key, value, _ in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


class VerdictWatch:
    """Reads every verdict (from the start, no group) in the background."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap, self.topic = bootstrap, topic
        self.decisions: dict[str, set[str]] = {}
        self.events = 0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> VerdictWatch:
        self._consumer = AIOKafkaConsumer(
            self.topic, bootstrap_servers=self.bootstrap, auto_offset_reset="earliest",
            enable_auto_commit=False, group_id=None, fetch_max_wait_ms=50)
        await self._consumer.start()
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=200, max_records=5000)
            for messages in batch.values():
                for message in messages:
                    data = json.loads(message.value)["data"]
                    self.decisions.setdefault(data["content_id"], set()).add(
                        data["decision_id"])
                    self.events += 1

    async def until(self, condition: Callable[[], bool], timeout: float, what: str,
                    workers: list[Worker]) -> None:
        for _ in range(int(timeout * 10)):
            if condition():
                return
            await asyncio.sleep(0.1)
        logs = "\n".join(w.log()[-3000:] for w in workers)
        raise AssertionError(f"timed out waiting for {what}; {len(self.decisions)} contents "
                             f"decided, {self.events} verdict events\n{logs}")

    async def __aexit__(self, *exc: Any) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()


def assert_every_input_decided_once(watch: VerdictWatch, ids: list[str]) -> None:
    missing = [i for i in ids if i not in watch.decisions]
    assert missing == [], f"{len(missing)} inputs without a verdict, e.g. {missing[:5]}"
    doubled = {i: d for i, d in watch.decisions.items() if len(d) > 1}
    assert doubled == {}, f"contents with several decision ids: {list(doubled.items())[:5]}"


async def kill_mid_stream_then_restart(broker: EmbeddedBroker, tmp_path: Path,
                                       env: dict[str, str], roles: str,
                                       records: list[Any], kill_after: int) -> None:
    """Run `roles`, kill -9 the worker once `kill_after` contents are decided, start another:
    every input gets exactly one decision."""
    first = start_vigil(["worker", "--agents", roles], env, tmp_path / "w1")
    workers = [first]
    try:
        await asyncio.to_thread(wait_ready, first)
        async with VerdictWatch(broker.bootstrap, env["VIGIL_TOPIC_PREFIX"] + VERDICTS.name
                                ) as watch:
            await produce_all(broker.bootstrap, env["VIGIL_TOPIC_PREFIX"], records)
            await watch.until(lambda: len(watch.decisions) >= kill_after, 120,
                              "first verdicts", workers)
            first.proc.send_signal(signal.SIGKILL)
            first.proc.wait(10)
            assert len(watch.decisions) < len(records), "killed too late to test anything"
            second = start_vigil(["worker", "--agents", roles], env, tmp_path / "w2")
            workers.append(second)
            await asyncio.to_thread(wait_ready, second)
            await watch.until(lambda: len(watch.decisions) >= len(records), 240,
                              "every verdict", workers)
            assert_every_input_decided_once(watch, [r[3] for r in records])
    finally:
        for worker in workers:
            worker.stop()


async def test_sigkill_mid_stream_then_restart_loses_nothing(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    prefix = unique_prefix()
    env = vigil_env(broker.url, prefix, tmp_path, VIGIL_TOPIC_PARTITIONS="4")
    await ensure_topics(broker.bootstrap, prefix=prefix, partitions=4)
    await kill_mid_stream_then_restart(broker, tmp_path, env, ROLES,
                                       inputs("kill", posts=9_500, images=500), 1_500)


async def test_workers_joining_and_leaving_mid_stream_lose_nothing(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    prefix = unique_prefix()
    env = vigil_env(broker.url, prefix, tmp_path, VIGIL_TOPIC_PARTITIONS="4")
    await ensure_topics(broker.bootstrap, prefix=prefix, partitions=4)
    records = inputs("rebalance", posts=5_700, images=300)
    first = start_vigil(["worker", "--agents", ROLES], env, tmp_path / "w1")
    workers = [first]
    try:
        await asyncio.to_thread(wait_ready, first)
        async with VerdictWatch(broker.bootstrap, prefix + VERDICTS.name) as watch:
            await produce_all(broker.bootstrap, prefix, records[: len(records) // 2])
            await watch.until(lambda: len(watch.decisions) >= 1_000, 120, "first verdicts",
                              workers)
            second = start_vigil(["worker", "--agents", ROLES],
                                 {**env, "VIGIL_WEB_PORT": "0"}, tmp_path / "w2")
            workers.append(second)
            await produce_all(broker.bootstrap, prefix, records[len(records) // 2:])
            await asyncio.sleep(3)  # let the group rebalance onto both workers
            first.stop()  # leaves cleanly: its partitions move to the second worker
            await watch.until(lambda: len(watch.decisions) >= len(records), 240,
                              "every verdict", workers)
            assert_every_input_decided_once(watch, [r[3] for r in records])
    finally:
        for worker in workers:
            worker.stop()


async def test_open_decision_windows_survive_a_sigkill(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """Regression: decide used to ack signals of undecided contents, so a crash during their
    decision window lost them for good. Now they stay unacknowledged until decided."""
    prefix = unique_prefix()
    policy = tmp_path / "waits-for-a-classifier.toml"
    policy.write_text(policy_text(image=["sha256", "md5", "pdq", "nsfw_image"], post=[]))
    env = vigil_env(broker.url, prefix, tmp_path, VIGIL_POLICY=str(policy),
                    VIGIL_DECIDE_DEADLINE_MS="600000")  # no classify runs: windows stay open
    await ensure_topics(broker.bootstrap, prefix=prefix, partitions=2)
    records = inputs("window", posts=0, images=40)
    first = start_vigil(["worker", "--agents", ROLES], env, tmp_path / "w1")
    workers = [first]
    try:
        await asyncio.to_thread(wait_ready, first)
        await produce_all(broker.bootstrap, prefix, records)
        for _ in range(600):  # every image's window open (intake + hashing signals read)
            _, body = await asyncio.to_thread(http, "GET", first.url("/metrics"))
            if b"vigil_decide_pending 40.0" in body:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("decide never held 40 open windows:\n" + first.log()[-3000:])
        await asyncio.sleep(6)  # past faust's commit interval (2.8 s): acked offsets commit
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(10)
        async with VerdictWatch(broker.bootstrap, prefix + VERDICTS.name) as watch:
            second = start_vigil(["worker", "--agents", ROLES],
                                 {**env, "VIGIL_DECIDE_DEADLINE_MS": "1000"}, tmp_path / "w2")
            workers.append(second)
            await watch.until(lambda: len(watch.decisions) >= len(records), 120,
                              "a verdict for every redelivered window", workers)
            assert_every_input_decided_once(watch, [r[3] for r in records])
    finally:
        for worker in workers:
            worker.stop()


async def test_sigkill_of_classify_mid_stream_then_restart_loses_nothing(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """classify consumes through the plain loop (agents/consumer.py): a kill -9 between its
    polls and its commits must redeliver, so every input still gets its classifier signal."""
    prefix = unique_prefix()
    policy = tmp_path / "waits-for-classify.toml"
    policy.write_text(policy_text(image=["nsfw_image"], post=["text_abuse"]))
    env = vigil_env(broker.url, prefix, tmp_path, VIGIL_TOPIC_PARTITIONS="4",
                    VIGIL_POLICY=str(policy), VIGIL_DECIDE_DEADLINE_MS="600000")
    await ensure_topics(broker.bootstrap, prefix=prefix, partitions=4)
    # No deadline can decide for a missing signal (10 min): only redelivery can.
    await kill_mid_stream_then_restart(broker, tmp_path, env, "intake,classify,decide",
                                       inputs("classify-kill", posts=4_000, images=100), 500)

"""Burst state survives `kill -9` and a rebalance: a raid in progress when the worker dies (or
hands its partitions over) is one incident afterwards (same dedup_key, same alert ids for what
is sent again), it resolves, and the thread's baseline learnt before is still in force
(docs/burst.md "State")."""

from __future__ import annotations

import asyncio
import random
import signal
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from agents.burst import CHECKPOINTS
from streams.topics import ALERTS, POSTS
from tests.integration.helpers import (
    assert_one_incident,
    at,
    collect,
    forum_post,
    member,
    produce,
    resolved,
    running,
    start_vigil,
    topic,
    unique_prefix,
    vigil_env,
    wait_ready,
)
from vigil.broker import EmbeddedBroker

pytestmark = pytest.mark.integration
WORDS = [f"word{i}" for i in range(400)]
RAID_START = 3 * 3600  # after three hours of ordinary posting on the thread


def posts(marker_thread: str = "t-other") -> tuple[list[bytes], list[bytes], list[bytes]]:
    """History (a member's post every two minutes on t-busy for three hours: a baseline of ≈ 3.5
    posts per 5 minutes, so a threshold of ≈ 18, twice the floor), the raid's first half, and its
    second half with a post an hour later (which moves the watermark: resolve)."""
    rng = random.Random(11)
    young = at(0) + timedelta(seconds=RAID_START) - timedelta(days=2)

    def post(n: int, when: float, author: dict[str, Any], thread: str = "t-busy") -> bytes:
        return forum_post(f"p{n}", thread, "b1", author,
                          " ".join(rng.choices(WORDS, k=12)), at(when))[1]

    history = [post(n, n * 120.0, member(f"old{n % 7}")) for n in range(RAID_START // 120)]
    raid = [post(1000 + n, RAID_START + n * 4.0, member(f"raider{n % 10}", young))
            for n in range(70)]
    marker = post(9999, RAID_START + 3600.0, member("old-m"), marker_thread)
    return history, raid[:30], [*raid[30:], marker]


async def a_checkpoint(bootstrap: str, name: str, key: bytes) -> None:
    """Wait until the checkpoint topic holds a record whose key starts with `key`."""
    consumer = AIOKafkaConsumer(name, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                fetch_max_wait_ms=50)
    await consumer.start()
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=200)
            if any(m.key.startswith(key) for records in batch.values() for m in records):
                return
    finally:
        await consumer.stop()


async def committed_past(bootstrap: str, group: str, name: str, offset: int,
                         partitions: int = 1) -> None:
    """Wait until `group` has committed a partition of `name` beyond `offset` (then a restart
    starts there, not from the beginning: what the worker knew must come from its checkpoint)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        while max([await consumer.committed(TopicPartition(name, p)) or 0
                   for p in range(partitions)]) <= offset:
            await asyncio.sleep(0.2)
    finally:
        await consumer.stop()


def raid_alerts(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The thread_raid alerts, each id once (consumers dedup by id); a re-sent id must carry
    the very same event."""
    seen: dict[str, dict[str, Any]] = {}
    for event in events:
        if event["data"]["kind"] != "thread_raid":
            continue
        first = seen.setdefault(event["id"], event)
        assert first == event, (first, event)
    return list(seen.values())


def test_kill_9_mid_raid_keeps_one_incident_and_the_learnt_baseline(
        broker: EmbeddedBroker, tmp_path: Path) -> None:
    history, first_half, second_half = posts()
    # one checkpoint per hour: the only one is written after the first batch (the history),
    # so the restart must also re-read the raid's first half from the input
    env = vigil_env(broker.url, unique_prefix(), tmp_path, VIGIL_TOPIC_PARTITIONS="1",
                    VIGIL_BURST_CHECKPOINT_SECONDS="3600")
    bootstrap = broker.bootstrap

    with running(["worker", "--agents", "burst"], env, tmp_path) as worker:
        posts_topic, alerts_topic = topic(worker, POSTS), topic(worker, ALERTS)
        asyncio.run(produce(bootstrap, posts_topic, history))
        asyncio.run(a_checkpoint(bootstrap, topic(worker, CHECKPOINTS),
                                 b"detect_thread_raids:0"))
        asyncio.run(produce(bootstrap, posts_topic, first_half))

        def opened_and_updated(events: list[dict[str, Any]]) -> bool:
            return any(e["data"]["alert_id"].endswith("-u1") for e in events)

        before = asyncio.run(collect(bootstrap, alerts_topic, opened_and_updated))
        asyncio.run(committed_past(bootstrap, f"{worker.prefix}vigil-burst.burst", posts_topic,
                                   len(history) + 10))
        worker.proc.send_signal(signal.SIGKILL)  # mid-raid: the incident is open
        worker.proc.wait(10)
    first_log = worker.log()

    time.sleep(1)  # the dead member's session ends on the broker's clock, not ours
    with running(["worker", "--agents", "burst"], env, tmp_path) as worker:
        asyncio.run(produce(bootstrap, posts_topic, second_half))
        events = asyncio.run(collect(bootstrap, alerts_topic, resolved("thread_raid", "t-busy"),
                                     timeout=180))
        restart_log = worker.log()

    assert "detect_thread_raids partition 0 restored at offset" in restart_log, restart_log
    assert "events re-read" in restart_log, (first_log, restart_log)
    one_raid_with_its_baseline(before, events)


def one_raid_with_its_baseline(before: list[dict[str, Any]],
                               events: list[dict[str, Any]]) -> None:
    """One incident throughout, resolved; the alerts sent after the handover still measure the
    raid against the learnt baseline (a fresh worker: baseline 0, the floor of 8)."""
    data = assert_one_incident(raid_alerts(events), "thread_raid")
    key = data[0]["dedup_key"]
    assert {e["data"]["dedup_key"] for e in before} == {key}  # the same incident throughout
    before_ids = {e["id"] for e in before}
    after = [d for d in data if d["alert_id"] not in before_ids]
    assert after and all(d["evidence"]["baseline_in_window"] >= 2 for d in after), after
    assert all(d["evidence"]["threshold"] > 8 for d in after)


def test_a_rebalance_hands_the_raid_over_with_its_state(
        broker: EmbeddedBroker, tmp_path: Path) -> None:
    """Worker A learns the thread and sees the raid open; B joins (a rebalance), A leaves (B
    takes every partition): B restores A's checkpoints and re-reads what A did after them."""
    history, first_half, second_half = posts(marker_thread="t-busy")
    env = vigil_env(broker.url, unique_prefix(), tmp_path, VIGIL_TOPIC_PARTITIONS="2",
                    VIGIL_BURST_CHECKPOINT_SECONDS="3600")
    bootstrap, key = broker.bootstrap, b"t-busy"  # every post on one partition, in order
    first = start_vigil(["worker", "--agents", "burst"], env, tmp_path / "a")
    try:
        wait_ready(first)
        posts_topic, alerts_topic = topic(first, POSTS), topic(first, ALERTS)
        asyncio.run(produce(bootstrap, posts_topic, history, key=key))
        asyncio.run(a_checkpoint(bootstrap, topic(first, CHECKPOINTS), b"detect_thread_raids:"))
        asyncio.run(produce(bootstrap, posts_topic, first_half, key=key))
        before = asyncio.run(collect(
            bootstrap, alerts_topic,
            lambda events: any(e["data"]["alert_id"].endswith("-u1") for e in events)))
        asyncio.run(committed_past(bootstrap, f"{first.prefix}vigil-burst.burst", posts_topic,
                                   len(history) + 10, partitions=2))
        with running(["worker", "--agents", "burst"], env, tmp_path / "b") as second:
            first.stop()  # A leaves: B holds every partition
            asyncio.run(produce(bootstrap, posts_topic, second_half, key=key))
            events = asyncio.run(collect(bootstrap, alerts_topic,
                                         resolved("thread_raid", "t-busy"), timeout=180))
            second_log = second.log()
    finally:
        first.stop()
    assert "detect_thread_raids partition" in second_log and "restored at offset" in second_log
    one_raid_with_its_baseline(before, events)

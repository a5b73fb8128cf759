"""The burst role's internal topics are created at start-up with their intended partition
counts: posts by board with `VIGIL_TOPIC_PARTITIONS`, pdq hashes and checkpoints with one. Left to the broker's
auto-create, both got its default (4 on the embedded broker) whatever the settings said."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from agents.burst import BY_BOARD, CHECKPOINTS, PDQ_HASHES
from tests.integration.helpers import running, unique_prefix, vigil_env
from vigil.broker import EmbeddedBroker

pytestmark = pytest.mark.integration


async def partition_counts(bootstrap: str, names: list[str]) -> dict[str, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        await consumer.topics()  # cluster metadata of every topic, creating none
        return {name: len(consumer.partitions_for_topic(name) or ()) for name in names}
    finally:
        await consumer.stop()


async def test_internal_topics_get_their_partition_counts(broker: EmbeddedBroker,
                                                         tmp_path: Path) -> None:
    prefix = unique_prefix()
    env = vigil_env(broker.url, prefix, tmp_path, VIGIL_TOPIC_PARTITIONS="3")
    names = [BY_BOARD.full_name(prefix), PDQ_HASHES.full_name(prefix),
             CHECKPOINTS.full_name(prefix)]
    with running(["worker", "--agents", "burst"], env, tmp_path):
        counts = await partition_counts(broker.bootstrap, names)
    assert counts == {names[0]: 3, names[1]: 1, names[2]: 1}

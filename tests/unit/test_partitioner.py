"""vigil.partitioner: bit-identical to aiokafka's (the Java client's) murmur2 partitioning."""

from __future__ import annotations

import random
from pathlib import Path

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as reference

from vigil.app import build_app
from vigil.partitioner import Murmur2Partitioner, murmur2
from vigil.settings import Settings


def test_murmur2_equals_the_reference_on_keys_of_every_length() -> None:
    rng = random.Random(7)
    for length in range(0, 300):
        for _ in range(40):
            key = bytes(rng.randrange(256) for _ in range(length))
            assert murmur2(key) == reference(key), key


def test_keys_go_to_the_partition_the_default_partitioner_picks() -> None:
    rng = random.Random(8)
    ours, theirs = Murmur2Partitioner(), DefaultPartitioner()
    for count in (1, 2, 3, 6, 12, 100):
        partitions = list(range(count))
        for i in range(500):
            key = f"content-{rng.randrange(10**9)}-{i}".encode()
            assert ours(key, partitions, partitions) == theirs(key, partitions, partitions)


def test_a_record_without_key_goes_to_an_available_partition() -> None:
    partitioner = Murmur2Partitioner()
    assert {partitioner(None, [0, 1, 2, 3], [2]) for _ in range(20)} == {2}
    assert {partitioner(None, [0, 1], []) for _ in range(50)} == {0, 1}


def test_the_apps_producer_partitions_with_it(tmp_path: Path) -> None:
    app, _ = build_app(Settings(broker="kafka://127.0.0.1:9", data_dir=tmp_path), ["intake"])
    assert isinstance(app.producer.partitioner, Murmur2Partitioner)

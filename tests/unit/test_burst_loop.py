"""Burst's detector agents on the consume loop (no broker): a batch's alerts and forwarded
records go to its outbox, redelivered records are forwarded but not counted twice, and a
rebalance keeps the groups of partitions that come back and drops the others."""

from __future__ import annotations

from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any


from agents.burst import BY_BOARD, _Detect, _Shared
from agents.bursts import BurstConfig, ReporterAccuracy, ThreadRaidDetector, Watermarked
from agents.metrics import Metrics
from streams.codec import encode
from streams.topics import ALERTS, POSTS
from tests.unit.test_burst import NOON, young
from tests.unit.test_burst import post as make_post


class Out:
    """What `Outbox.add` received."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes | None, bytes]] = []

    def add(self, spec: Any, key: bytes | None, value: bytes) -> None:
        self.records.append((spec.name, key, value))

    def names(self) -> list[str]:
        return [name for name, _, _ in self.records]


def raid(n: int, start: int = 0, partition: int = 0) -> list[Any]:
    """`n` posts of young accounts on one thread, 4 s apart, as consumer records."""
    out = []
    for i in range(start, start + n):
        data, at = make_post(i, "t-raid", f"raider{i % 10}", NOON + i * 4.0,
                             young(NOON, hours=2))
        value = encode(POSTS, data, source="forum", event_id=f"e{i}",
                       time=datetime.fromtimestamp(at, timezone.utc))[1]
        out.append(SimpleNamespace(topic="forum.posts.v1", partition=partition, offset=i,
                                   timestamp=int(at * 1000), key=b"t-raid", value=value))
    return out


def detection() -> _Detect:
    config = BurstConfig()
    shared = _Shared(Metrics(), None, config, ReporterAccuracy())

    def forward(out: Any, record: Any, decoded: Any) -> None:
        out.add(BY_BOARD, decoded.data.board.encode(), record.value)

    return _Detect("detect_thread_raids", POSTS,
                   lambda: Watermarked([ThreadRaidDetector(config)], config), shared,
                   forward=forward)


async def test_a_batch_puts_its_alerts_and_forwarded_posts_in_the_outbox() -> None:
    agent, out = detection(), Out()
    groups = await agent.handle(raid(40), out)
    assert out.names().count(BY_BOARD.name) == 40  # every post, forwarded by board
    assert ALERTS.name in out.names()  # the raid
    assert groups[0] is agent.partitions[0] and groups[0].offset == 39


async def test_redelivered_posts_are_forwarded_but_not_counted_again() -> None:
    agent, first, again = detection(), Out(), Out()
    await agent.handle(raid(40), first)
    await agent.handle(raid(20, start=20), again)  # not committed: the loop redelivers
    assert again.names() == [BY_BOARD.name] * 20  # at-least-once forward, no new alert
    assert agent.partitions[0].offset == 39


async def test_a_rebalance_keeps_the_groups_that_come_back_and_drops_the_others() -> None:
    agent = detection()
    await agent.handle([*raid(10), *raid(10, partition=1)], Out())
    kept = agent.partitions[0]
    agent.keep_only({0})  # the assignment after the revoke: partition 1 went elsewhere
    assert agent.partitions == {0: kept}
    await agent.handle(raid(5, start=10), Out())  # right after the group's offset
    assert agent.partitions[0] is kept and kept.offset == 14  # exact: nothing re-read

"""Time-boxed mitigations and reviews through the real broker.

The test plays the burst agent: it produces `thread_raid` / `new_account_swarm` alerts on
`safety.alerts.v1` itself, so what is tested is decide's side of the contract: the `mitigation`
announcement, young accounts' content held in scope, the console's early lift (a `restore`
review naming the mitigation), expiry, and `confirm` on allowed content hiding it.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streams.codec import encode
from streams.events import SignalData
from streams.signing import verify
from tests.integration.helpers import (
    SIGNING_KEY,
    SIGNING_KEY_ID,
    Worker,
    cloud_event,
    collect,
    http,
    image_event,
    policy_text,
    produce,
    running,
    topic,
    unique_prefix,
    vigil_env,
)
from streams.topics import ALERTS, IMAGES, POSTS, REVIEWS, SIGNALS, TAKEDOWNS, VERDICTS
from vigil.broker import EmbeddedBroker, free_port

pytestmark = pytest.mark.integration
KEYS = {SIGNING_KEY_ID: SIGNING_KEY}
MITIGATIONS = """
[[mitigations]]
name = "raid"
on = ["thread_raid"]
action = "restrict_thread"
duration_minutes = 60
young_account_days = 7

[[mitigations]]
name = "swarm"
on = ["new_account_swarm"]
action = "hold_new_accounts_media"
duration_minutes = 60
young_account_days = 7

[[mitigations]]
name = "brief"
on = ["test_brief_raid"]
action = "restrict_thread"
duration_minutes = 0.02
"""
YOUNG = "2025-02-04T01:00:00Z"  # an hour before the posts' event time
OLD = "2020-01-01T00:00:00Z"


def mitigation_policy() -> str:
    """The default policy without classifiers, its shadow mitigations replaced by ours."""
    text = policy_text(image=[], post=[])
    start = text.index("[[mitigations]]")
    end = text.index("# Who hears about what.")
    return text[:start] + text[end:] + MITIGATIONS


@pytest.fixture(scope="module")
def worker(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    data_dir: Path = tmp_path_factory.mktemp("vigil-mitigations")
    policy = data_dir / "policy.toml"
    policy.write_text(mitigation_policy())
    env = vigil_env(broker.url, unique_prefix(), data_dir, VIGIL_POLICY=str(policy))
    with running(["worker", "--agents", "intake,decide"], env, data_dir) as worker:
        yield worker


def burst_alert(kind: str, key: str, *, thread: str | None = None,
                board: str | None = None) -> bytes:
    target = {"type": "thread", "id": thread, "thread_id": thread} if thread else None
    return json.dumps(cloud_event("safety.alert", {
        "alert_id": f"alr-{key}-{uuid.uuid4().hex[:6]}", "kind": kind, "severity": "high",
        "summary": "test raid", "target": target, "evidence": {"board": board},
        "first_seen": "2025-02-04T02:10:00Z", "last_seen": "2025-02-04T02:13:00Z",
        "count": 30, "dedup_key": key, "runbook_url": None,
    }, source="vigil/burst")).encode()


def post(post_id: str, thread: str, created_at: str, board: str = "general") -> bytes:
    return json.dumps(cloud_event("forum.post.created", {
        "post_id": post_id, "thread_id": thread, "board": board, "body": "hello",
        "author": {"id": f"u-{post_id}", "created_at": created_at},
    })).encode()


def review(decision_id: str, outcome: str, content_id: str) -> bytes:
    return json.dumps(cloud_event("safety.review", {
        "decision_id": decision_id, "outcome": outcome, "reviewer": "mod-1",
        "content_id": content_id})).encode()


def mitigation(scope_id: str, resolved: bool) -> Any:
    def match(e: dict[str, Any]) -> bool:
        d = e["data"]
        return (d["kind"] == "mitigation" and d["target"]["id"] == scope_id
                and d["evidence"]["resolved"] is resolved)
    return match


def verdict_of(content_id: str) -> Any:
    return lambda e: e["data"]["content_id"] == content_id


async def wait_for(worker: Worker, broker: EmbeddedBroker, spec: Any, match: Any
                   ) -> dict[str, Any]:
    events = await collect(broker.bootstrap, topic(worker, spec),
                           lambda es: any(match(e) for e in es))
    return next(e for e in events if match(e))


async def test_restrict_thread_holds_young_accounts_until_the_console_lifts_it(
        worker: Worker, broker: EmbeddedBroker) -> None:
    raid_key = "thread_raid:t-raid:20250204T021000Z"
    await produce(broker.bootstrap, topic(worker, ALERTS),
                  [burst_alert("thread_raid", raid_key, thread="t-raid")], key=raid_key.encode())
    announced = await wait_for(worker, broker, ALERTS, mitigation("t-raid", False))
    data, evidence = announced["data"], announced["data"]["evidence"]
    assert data["dedup_key"].startswith("mitigation:restrict_thread:t-raid:")
    assert data["target"]["type"] == "thread"
    assert evidence["mitigation"] == "restrict_thread" and evidence["scope"] == "thread"
    assert evidence["trigger"] == raid_key and evidence["decision_id"].startswith("dec-")
    assert evidence["expires_at"].endswith("Z")

    await produce(broker.bootstrap, topic(worker, POSTS), [
        post("p-young", "t-raid", YOUNG), post("p-old", "t-raid", OLD),
        post("p-elsewhere", "t-calm", YOUNG)])
    for post_id, expected in (("p-young", "hold"), ("p-old", "allow"), ("p-elsewhere", "allow")):
        verdict = await wait_for(worker, broker, VERDICTS, verdict_of(post_id))
        assert verdict["data"]["verdict"] == expected, verdict
    takedown = await wait_for(worker, broker, TAKEDOWNS,
                              lambda e: e["data"]["target"]["id"] == "p-young")
    assert verify(takedown, KEYS)
    assert takedown["data"]["action"] == "hold_for_review"
    assert [r["detector"] for r in takedown["data"]["reasons"]] == ["mitigation"]

    await produce(broker.bootstrap, topic(worker, REVIEWS),
                  [review(evidence["decision_id"], "restore", "t-raid")], key=b"t-raid")
    lifted = await wait_for(worker, broker, ALERTS, mitigation("t-raid", True))
    assert lifted["data"]["dedup_key"] == data["dedup_key"]
    assert lifted["data"]["evidence"]["lifted_by"] == "mod-1"
    assert lifted["data"]["evidence"]["resolved_at"]
    await produce(broker.bootstrap, topic(worker, POSTS), [post("p-after", "t-raid", YOUNG)])
    assert (await wait_for(worker, broker, VERDICTS, verdict_of("p-after")))["data"][
        "verdict"] == "allow"


async def test_hold_new_accounts_media_holds_young_images_on_the_board(
        worker: Worker, broker: EmbeddedBroker) -> None:
    key = "new_account_swarm:b-swarm:20250204T021000Z"
    await produce(broker.bootstrap, topic(worker, ALERTS),
                  [burst_alert("new_account_swarm", key, board="b-swarm")], key=key.encode())
    announced = await wait_for(worker, broker, ALERTS, mitigation("b-swarm", False))
    assert announced["data"]["target"]["type"] == "board"
    young = image_event("img-swarm-young", b"\x89PNG-not-read", post_id="p-s1")
    young["data"]["board"] = "b-swarm"
    old = image_event("img-swarm-old", b"\x89PNG-not-read", post_id="p-s2")
    old["data"].update(board="b-swarm", author={"id": "u-old", "created_at": OLD})
    text = post("p-swarm-text", "t-swarm", YOUNG, board="b-swarm")  # posts are not media
    await produce(broker.bootstrap, topic(worker, IMAGES),
                  [json.dumps(young).encode(), json.dumps(old).encode()])
    await produce(broker.bootstrap, topic(worker, POSTS), [text])
    for content_id, expected in (("img-swarm-young", "hold"), ("img-swarm-old", "allow"),
                                 ("p-swarm-text", "allow")):
        verdict = await wait_for(worker, broker, VERDICTS, verdict_of(content_id))
        assert verdict["data"]["verdict"] == expected, verdict


async def test_a_mitigation_lifts_itself_when_it_expires(worker: Worker,
                                                         broker: EmbeddedBroker) -> None:
    key = "test_brief_raid:t-brief:20250204T021000Z"
    await produce(broker.bootstrap, topic(worker, ALERTS),
                  [burst_alert("test_brief_raid", key, thread="t-brief")], key=key.encode())
    announced = await wait_for(worker, broker, ALERTS, mitigation("t-brief", False))
    lifted = await wait_for(worker, broker, ALERTS, mitigation("t-brief", True))
    assert lifted["data"]["evidence"]["lifted_by"] == "expiry"
    assert lifted["data"]["evidence"]["resolved_at"] == announced["data"]["evidence"][
        "expires_at"]


async def test_confirm_on_allowed_content_hides_it(worker: Worker,
                                                   broker: EmbeddedBroker) -> None:
    await produce(broker.bootstrap, topic(worker, POSTS), [post("p-confirm", "t-c", OLD)])
    allowed = await wait_for(worker, broker, VERDICTS, verdict_of("p-confirm"))
    assert allowed["data"]["verdict"] == "allow"
    await produce(broker.bootstrap, topic(worker, REVIEWS),
                  [review(allowed["data"]["decision_id"], "confirm", "p-confirm")] * 2,
                  key=b"p-confirm")
    takedowns = await collect(broker.bootstrap, topic(worker, TAKEDOWNS), lambda es: any(
        e["data"]["target"]["id"] == "p-confirm" for e in es))
    hide = [e for e in takedowns if e["data"]["target"]["id"] == "p-confirm"]
    assert [e["data"]["action"] for e in hide] == ["hide"] and verify(hide[0], KEYS)
    assert hide[0]["data"]["decision_id"] != allowed["data"]["decision_id"]
    assert hide[0]["data"]["target"]["thread_id"] == "t-c"
    held = await wait_for(worker, broker, VERDICTS, lambda e: verdict_of("p-confirm")(e)
                          and e["data"]["verdict"] == "hold")
    assert held["data"]["decision_id"] == hide[0]["data"]["decision_id"]


async def test_decisions_and_mitigations_survive_a_decide_restart(
        broker: EmbeddedBroker, tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(mitigation_policy())
    env = vigil_env(broker.url, unique_prefix(), tmp_path, VIGIL_POLICY=str(policy))
    args = ["worker", "--agents", "intake,decide"]
    raid_key = "thread_raid:t-r2:20250204T021000Z"
    with running(args, env, tmp_path) as first:
        await produce(broker.bootstrap, topic(first, ALERTS),
                      [burst_alert("thread_raid", raid_key, thread="t-r2")],
                      key=raid_key.encode())
        announced = await wait_for(first, broker, ALERTS, mitigation("t-r2", False))
        await produce(broker.bootstrap, topic(first, POSTS),
                      [post("p-r2-young", "t-r2", YOUNG), post("p-r2-old", "t-other", OLD)])
        held = await wait_for(first, broker, VERDICTS, verdict_of("p-r2-young"))
        allowed = await wait_for(first, broker, VERDICTS, verdict_of("p-r2-old"))
    assert (held["data"]["verdict"], allowed["data"]["verdict"]) == ("hold", "allow")

    with running(args, env, tmp_path) as second:
        # decisions taken by the first process: a restore and a confirm still apply
        await produce(broker.bootstrap, topic(second, REVIEWS),
                      [review(held["data"]["decision_id"], "restore", "p-r2-young")],
                      key=b"p-r2-young")
        await produce(broker.bootstrap, topic(second, REVIEWS),
                      [review(allowed["data"]["decision_id"], "confirm", "p-r2-old")],
                      key=b"p-r2-old")
        restore = await wait_for(second, broker, TAKEDOWNS, lambda e: e["data"]["target"][
            "id"] == "p-r2-young" and e["data"]["action"] == "restore")
        assert restore["data"]["target"]["thread_id"] == "t-r2" and verify(restore, KEYS)
        await wait_for(second, broker, TAKEDOWNS, lambda e: e["data"]["target"][
            "id"] == "p-r2-old" and e["data"]["action"] == "hide")
        # the raid's mitigation was rebuilt from the alerts topic: still in force
        await produce(broker.bootstrap, topic(second, POSTS),
                      [post("p-r2-later", "t-r2", YOUNG)])
        later = await wait_for(second, broker, VERDICTS, verdict_of("p-r2-later"))
        assert later["data"]["verdict"] == "hold"
        # not announced again by the second process: a marker on the announcement's partition,
        # produced after the second process had settled, comes after any re-announcement
        dedup_key = announced["data"]["dedup_key"]
        await produce(broker.bootstrap, topic(second, ALERTS),
                      [burst_alert("test_marker", "marker-r2")], key=dedup_key.encode())
        alerts = await collect(broker.bootstrap, topic(second, ALERTS), lambda es: any(
            e["data"]["dedup_key"] == "marker-r2" for e in es))
        assert len([e for e in alerts if mitigation("t-r2", False)(e)]) == 1

    with running(args, env, tmp_path) as third:
        # Regression: the same reviews redelivered after another restart applied again. Now
        # the third process learns them from the outputs the second one published. A review
        # of an unknown decision, after them on their partition, marks the end.
        await produce(broker.bootstrap, topic(third, REVIEWS), [
            review(held["data"]["decision_id"], "restore", "p-r2-young"),
            review(allowed["data"]["decision_id"], "confirm", "p-r2-old"),
            review("dec-marker", "restore", "p-none")], key=b"p-r2-young")
        counts = await reviews_counted(third, 'result="unknown_decision"')
        assert counts['outcome="restore",result="duplicate"'] >= 1, counts
        assert counts['outcome="confirm",result="duplicate"'] >= 1, counts
        assert not any('result="applied"' in labels for labels in counts), counts


async def reviews_counted(worker: Worker, until: str) -> dict[str, float]:
    """`vigil_reviews_total` by labels, once a series with `until` in its labels counts one."""
    for _ in range(600):
        _, body = await asyncio.to_thread(http, "GET", worker.url("/metrics"))
        counts = {line[line.index("{") + 1:line.index("}")]: float(line.rsplit(" ", 1)[1])
                  for line in body.decode().splitlines()
                  if line.startswith("vigil_reviews_total{")}
        if any(until in labels and n >= 1 for labels, n in counts.items()):
            return counts
        await asyncio.sleep(0.1)
    raise AssertionError(f"no review with {until} counted:\n" + worker.log()[-3000:])


async def test_two_decide_workers_announce_each_mitigation_once(
        broker: EmbeddedBroker, tmp_path: Path) -> None:
    """Regression: every decide worker announced every mitigation (start and expiry: same ids,
    sent once per worker). Now the worker owning the scope's partition does."""
    policy = tmp_path / "policy.toml"
    policy.write_text(mitigation_policy())
    env = vigil_env(broker.url, unique_prefix(), tmp_path, VIGIL_POLICY=str(policy),
                    VIGIL_TOPIC_PARTITIONS="4")
    args = ["worker", "--agents", "decide"]
    with running(args, {**env, "VIGIL_DATA_DIR": str(tmp_path / "a")}, tmp_path / "a") as a, \
            running(args, {**env, "VIGIL_DATA_DIR": str(tmp_path / "b"),
                           "VIGIL_WEB_PORT": str(free_port())}, tmp_path / "b") as b:
        await both_consuming(broker, [a, b])
        threads = [f"t-once-{n}" for n in range(6)]  # scopes spread over both workers
        for thread in threads:
            key = f"test_brief_raid:{thread}:20250204T021000Z"
            await produce(broker.bootstrap, topic(a, ALERTS),
                          [burst_alert("test_brief_raid", key, thread=thread)],
                          key=key.encode())
        # `brief` expires after 1.2 s: each start and each lift, by expiry, once
        await collect(broker.bootstrap, topic(a, ALERTS), lambda es: all(
            any(mitigation(t, True)(e) for e in es) for t in threads))
        # a later one's lift: both workers' expiry timers have run since the lifts above
        key = "test_brief_raid:t-once-last:20250204T021000Z"
        await produce(broker.bootstrap, topic(a, ALERTS),
                      [burst_alert("test_brief_raid", key, thread="t-once-last")],
                      key=key.encode())
        alerts = await collect(broker.bootstrap, topic(a, ALERTS), lambda es: any(
            mitigation("t-once-last", True)(e) for e in es))
    for thread in threads:
        for resolved in (False, True):
            sent = [e for e in alerts if mitigation(thread, resolved)(e)]
            assert len(sent) == 1, (thread, resolved, [e["id"] for e in sent])


async def both_consuming(broker: EmbeddedBroker, workers: list[Worker]) -> None:
    """Until every worker has consumed signals: the group has settled with all of them."""
    signals = topic(workers[0], SIGNALS)
    series = f'faust_messages_received_per_topic_total{{topic="{signals}"}}'
    for n in range(300):
        await produce(broker.bootstrap, signals, [encode(SIGNALS, SignalData(
            detector="intake", detector_version="test-1", content_type="post",
            content_id=f"p-settle-{n}-{k}", post_id=f"p-settle-{n}-{k}"),
            source="vigil/intake")[1]
            for k in range(8)])
        bodies = [(await asyncio.to_thread(http, "GET", w.url("/metrics")))[1].decode()
                  for w in workers]
        if all(series in body for body in bodies):
            return
        await asyncio.sleep(0.2)
    raise AssertionError("the decide group never settled with every worker")

"""Helpers for integration tests: unique prefixes, a worker subprocess, produce and collect."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from agents.policy.loader import default_policy_text
from streams.topics import ALERTS, POSTS, REPORTS, SIGNALS, TopicSpec
from vigil.broker import free_port

SIGNING_KEY = "integration-test-secret"
SIGNING_KEY_ID = "it-key-1"


def unique_prefix() -> str:
    """A topic prefix no other test uses (tests share one broker)."""
    return f"t{uuid.uuid4().hex[:10]}."


def cloud_event(type_: str, data: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"evt-{uuid.uuid4().hex}",
        "source": "forum/test",
        "type": type_,
        "time": "2025-02-04T02:13:05Z",
        "data": data,
        **extra,
    }


def image_event(image_id: str, image: bytes, post_id: str = "p1") -> dict[str, Any]:
    return cloud_event("forum.image.uploaded", {
        "image_id": image_id, "post_id": post_id, "thread_id": "t1",
        "author": {"id": "u1", "created_at": "2025-02-04T01:00:00Z"},
        "content_type": "image/png", "data_b64": base64.b64encode(image).decode(),
    })


def post_event(post_id: str, body: str = "hello forum") -> dict[str, Any]:
    return cloud_event("forum.post.created", {
        "post_id": post_id, "thread_id": "t1", "author": {"id": "u1"}, "body": body,
    })


@dataclass
class Worker:
    """A `vigil` process under test, with its environment."""

    proc: subprocess.Popen[bytes]
    env: dict[str, str]
    prefix: str
    web_port: int
    data_dir: Path
    log_path: Path
    extra: dict[str, Any] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.web_port}{path}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def vigil_env(broker_url: str | None, prefix: str, data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env.update({
        "VIGIL_TOPIC_PREFIX": prefix,
        "VIGIL_DATA_DIR": str(data_dir),
        "VIGIL_WEB_PORT": str(free_port()),
        "VIGIL_SIGNING_KEY": SIGNING_KEY,
        "VIGIL_SIGNING_KEY_ID": SIGNING_KEY_ID,
        "VIGIL_BURST_CHECKPOINT_KEY": "integration-test-checkpoint-secret",
        "VIGIL_TOPIC_PARTITIONS": "2",
        "VIGIL_LOG_LEVEL": "warn",
        # A loaded CI box must not turn "allow" into a deadline "hold"; tests of the deadline
        # itself pass a short one.
        "VIGIL_DECIDE_DEADLINE_MS": "30000",
        # Only the console's own tests run its feed (an extra consumer per worker otherwise).
        "VIGIL_CONSOLE_ENABLED": "false",
        **extra,
    })
    if broker_url:
        env["VIGIL_BROKER"] = broker_url
    return env


def policy_text(*, image: list[str], post: list[str]) -> str:
    """The default policy with its `[required]` detectors replaced."""
    text = default_policy_text()
    start = text.index("[required]")
    end = text.index("\n[", start + 1)
    return (text[:start] + f"[required]\nimage = {json.dumps(image)}\npost = {json.dumps(post)}"
            + text[end:])


def start_vigil(args: list[str], env: dict[str, str], data_dir: Path) -> Worker:
    """Start `vigil ARGS`; a worker running decide without classify gets a policy that does not
    wait for classifier signals (the default policy requires them: `vigil run` runs every role)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    if args[:2] == ["worker", "--agents"] and "VIGIL_POLICY" not in env:
        roles = set(args[2].split(","))
        if "decide" in roles and "classify" not in roles:
            policy = data_dir / "policy-without-classify.toml"
            policy.write_text(policy_text(image=["sha256", "md5", "pdq"], post=[]))
            env = {**env, "VIGIL_POLICY": str(policy)}
    log_path = data_dir / "worker.log"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "vigil.cli", *args],
            env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    return Worker(proc, env, env["VIGIL_TOPIC_PREFIX"], int(env["VIGIL_WEB_PORT"]), data_dir,
                  log_path)


def http(method: str, url: str, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_ready(worker: Worker, timeout: float = 90.0) -> float:
    """Poll /readyz until 200; return seconds waited. Fails with the worker's log."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if worker.proc.poll() is not None:
            raise AssertionError(f"vigil exited with {worker.proc.returncode}:\n{worker.log()}")
        try:
            status, _ = http("GET", worker.url("/readyz"))
            if status == 200:
                return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"vigil not ready after {timeout} s:\n{worker.log()}")


async def produce(bootstrap: str, topic: str, values: list[bytes],
                  key: bytes | None = None) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key) for value in values]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def collect(
    bootstrap: str,
    topic: str,
    until: Callable[[list[dict[str, Any]]], bool],
    timeout: float = 60.0,
) -> list[dict[str, Any]]:
    """Read `topic` from the start until `until(events)` holds (events as parsed JSON).

    Counts arrivals instead of trusting end offsets (Tansu's ListOffsets may trail).
    """
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
        enable_auto_commit=False, group_id=None, fetch_max_wait_ms=50,
    )
    await consumer.start()
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    try:
        while not until(events):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out on {topic}; got {len(events)} events: "
                                     f"{json.dumps(events)[:2000]}")
            batch = await consumer.getmany(timeout_ms=200)
            for messages in batch.values():
                events.extend(json.loads(m.value) for m in messages)
    finally:
        await consumer.stop()
    return events


def topic(worker: Worker, spec: TopicSpec) -> str:
    return spec.full_name(worker.prefix)


def write_bank(data_dir: Path, name: str, *rows: str) -> None:
    """A bank CSV `<data_dir>/banks/<name>.csv` with the DESIGN §5 header and `rows`."""
    banks = data_dir / "banks"
    banks.mkdir(parents=True, exist_ok=True)
    header = "signal_type,signal,bank,label,severity"
    (banks / f"{name}.csv").write_text("\n".join([header, *rows]) + "\n")


@contextlib.contextmanager
def running(args: list[str], env: dict[str, str], data_dir: Path) -> Iterator[Worker]:
    """`vigil ARGS` started, ready (/readyz 200) while in use, and stopped afterwards."""
    worker = start_vigil(args, env, data_dir)
    try:
        wait_ready(worker)
        yield worker
    finally:
        worker.stop()


# ---------------------------------------------------------------- burst detection (test_burst_*)

#: Burst scenarios happen on a Tuesday afternoon (staffed hours of the default policy).
BURST_T0 = datetime(2025, 2, 4, 14, 0, tzinfo=timezone.utc)
#: Accounts that old carry full trust and are never "young".
OLD = datetime(2020, 1, 1, tzinfo=timezone.utc)
_RANK = {"low": 0, "medium": 1, "high": 2, "critical": 3}


def at(seconds: float) -> datetime:
    """Event time `seconds` after `BURST_T0`."""
    return BURST_T0 + timedelta(seconds=seconds)


def rfc3339(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def member(account_id: str, created_at: datetime = OLD) -> dict[str, Any]:
    return {"id": account_id, "created_at": rfc3339(created_at)}


def forum_post(post_id: str, thread: str, board: str, author: dict[str, Any], body: str,
               when: datetime) -> tuple[TopicSpec, bytes]:
    return POSTS, json.dumps(cloud_event("forum.post.created", {
        "post_id": post_id, "thread_id": thread, "board": board, "author": author, "body": body,
    }, time=rfc3339(when))).encode()


def forum_report(report_id: str, target: str, reporter: dict[str, Any],
                 when: datetime) -> tuple[TopicSpec, bytes]:
    return REPORTS, json.dumps(cloud_event("forum.report.created", {
        "report_id": report_id, "target_type": "post", "target_id": target, "thread_id": "t1",
        "reporter": reporter, "reason": "spam",
    }, time=rfc3339(when))).encode()


def pdq_signal(image_id: str, author_id: str, pdq: int,
               when: datetime) -> tuple[TopicSpec, bytes]:
    """A `pdq` signal as the hashing role emits it for an uploaded image."""
    return SIGNALS, json.dumps(cloud_event("safety.signal", {
        "detector": "pdq", "detector_version": "pdq-test", "content_type": "image",
        "content_id": image_id, "author_id": author_id, "thread_id": "t1",
        "evidence": {"pdq": f"{pdq:064x}"},
    }, source="vigil/hashing", time=rfc3339(when))).encode()


def resolved(kind: str, target_or_board: str) -> Callable[[list[dict[str, Any]]], bool]:
    """Until-condition: the incident of `kind` on a target id (or evidence board) resolved."""
    def done(events: list[dict[str, Any]]) -> bool:
        return any(e["data"]["kind"] == kind and e["data"]["evidence"].get("resolved")
                   and target_or_board in ((e["data"].get("target") or {}).get("id"),
                                           e["data"]["evidence"].get("board"))
                   for e in events)
    return done


def run_burst(broker_url: str, bootstrap: str, data_dir: Path,
              inputs: list[tuple[TopicSpec, bytes]],
              until: Callable[[list[dict[str, Any]]], bool]) -> list[dict[str, Any]]:
    """A fresh `vigil worker --agents burst` on new topics: produce `inputs` (order kept per
    topic), return the alert events up to `until`.

    One partition per topic (`VIGIL_TOPIC_PARTITIONS=1`; the worker creates the role's internal
    by-board topic with it and the pdq topic with one anyway): `until` waits for the attack's resolve,
    which an event an hour later on the same input causes, so everything before it has been
    processed and every earlier alert is already on the (single) alerts partition.
    """
    prefix = unique_prefix()
    env = vigil_env(broker_url, prefix, data_dir, VIGIL_TOPIC_PARTITIONS="1")

    async def go(worker: Worker) -> list[dict[str, Any]]:
        by_topic: dict[str, list[bytes]] = {}
        for spec, value in inputs:
            by_topic.setdefault(topic(worker, spec), []).append(value)
        for name, values in by_topic.items():
            await produce(bootstrap, name, values)
        return await collect(bootstrap, topic(worker, ALERTS), until, timeout=120)

    with running(["worker", "--agents", "burst"], env, data_dir) as worker:
        return asyncio.run(go(worker))


def assert_one_incident(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """Every alert is one incident of `kind`, following docs/burst.md "One alert per incident":
    opened once (`-u0`), updated only when the count grew by half or the severity rose (`-u1`
    …), resolved once, last; the CloudEvent id is the alert id. Returns the alerts' data."""
    data = [e["data"] for e in events]
    assert {d["kind"] for d in data} == {kind}, [d["summary"] for d in data]
    assert len({d["dedup_key"] for d in data}) == 1, [d["dedup_key"] for d in data]
    assert all(e["id"] == e["data"]["alert_id"] for e in events)
    *sent, last = data
    key = last["dedup_key"]
    assert last["alert_id"] == f"alr-{key}-resolved" and last["evidence"]["resolved"] is True
    assert [d["alert_id"] for d in sent] == [f"alr-{key}-u{i}" for i in range(len(sent))]
    assert not any(d["evidence"].get("resolved") for d in sent)
    for before, after in zip(sent, sent[1:]):
        grew = after["count"] >= max(before["count"] + 1, before["count"] * 1.5)
        assert grew or _RANK[after["severity"]] > _RANK[before["severity"]], (before, after)
    assert last["count"] >= sent[-1]["count"]
    return data


def same_alerts(first: list[dict[str, Any]], second: list[dict[str, Any]]) -> None:
    """Replaying the input gives the very same alert events: ids, times and data."""
    def strip(events: list[dict[str, Any]]) -> dict[str, Any]:
        return {e["id"]: {k: e[k] for k in ("time", "type", "source", "data")} for e in events}
    assert strip(second) == strip(first)

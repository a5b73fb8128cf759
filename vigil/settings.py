"""The one settings object: `VIGIL_*` environment variables over an optional TOML file.

Every tunable of Vigil is a field here, read once at start-up and frozen; everything else
(the faust app, the broker runner, agents, the web server) receives values from this object
rather than reading the environment itself. Precedence: environment > TOML file (path in
`VIGIL_CONFIG`) > defaults. Names listed in DESIGN §7 are contract: operators and integration
tests rely on them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class Settings(BaseSettings):
    """All of Vigil's configuration (see docs/configuration.md for each field)."""

    model_config = SettingsConfigDict(
        env_prefix="VIGIL_", frozen=True, extra="ignore", case_sensitive=False
    )

    # --- broker and topics
    broker: str | None = Field(
        default=None, description="kafka://host:port[,host:port]; unset = embedded Tansu broker"
    )
    topic_prefix: str = Field(
        default="", description="Prefix on every topic name (tests, several sites on one Kafka)"
    )
    topic_partitions: int = Field(default=6, ge=1, description="Partitions of created topics")
    topic_replication: int = Field(default=1, ge=1, description="Replication of created topics")
    embedded_broker_port: int = Field(default=0, ge=0, description="0 = a free port")
    embedded_broker_max_rss_mb: int = Field(
        default=2048, ge=64, description="Warn when the embedded broker's memory passes this"
    )

    # --- HTTP (ingest, health, metrics, console)
    web_port: int = Field(default=8080, ge=0, le=65535)
    web_host: str = "127.0.0.1"
    ingest_max_bytes: int = Field(default=1_048_576, ge=1024, description="Largest POST body")
    ingest_tokens: SecretStr | None = Field(
        default=None,
        description="Comma-separated bearer tokens POST /v1/events accepts (several: rotation); "
        "unset = ingest open to whoever reaches the port",
    )

    # --- state and banks
    data_dir: Path = Path("var")
    banks_dir: Path | None = Field(default=None, description="Default: <data_dir>/banks")
    banks_reload_seconds: float = Field(default=2.0, gt=0)
    hash_retro_horizon_hours: float = Field(
        default=72.0, ge=0, description="Recent images kept for retroactive bank matching"
    )
    hash_retro_max_images: int = Field(
        default=200_000, ge=0, description="At most this many recent images kept (0: off)"
    )
    bank_flood_window_seconds: float = Field(
        default=3600.0, gt=0, description="Window in which a bank entry's matches are counted"
    )
    bank_flood_min_images: int = Field(
        default=20, ge=1, description="Distinct images an entry must match to be quarantined"
    )
    bank_flood_factor: float = Field(
        default=10.0, ge=1, description="... and this many times its own baseline per window"
    )
    bank_flood_quarantine_hours: float = Field(
        default=24.0, gt=0, description="How long a flooding bank entry stays quarantined"
    )

    # --- images (hashing role: safe decoding and URL fetching; see docs/hashing.md)
    image_max_bytes: int = Field(
        default=20 * 1024 * 1024, ge=1024,
        description="Largest image (inline or fetched) that is decoded; larger → unchecked (held)",
    )
    image_max_pixels: int = Field(
        default=50_000_000, ge=1,
        description="Largest width×height decoded (checked from the header, before decoding: "
        "decompression bombs); over it → unchecked (held)",
    )
    image_max_frames: int = Field(
        default=8, ge=1, description="Frames of an animated GIF/WebP/APNG that are hashed"
    )
    image_hash_max_side: int = Field(
        default=600, ge=0,
        description="Frames are shrunk to this longest side before perceptual hashing (0 = off)",
    )
    image_url_allowlist: str = Field(
        default="",
        description="Comma-separated hosts URL images are fetched from (`.example.com` = domain "
        "and subdomains); empty = URL images are not fetched (unchecked → held)",
    )
    image_url_allow_http: bool = Field(
        default=False, description="Also fetch plain-http URLs from allow-listed hosts"
    )
    image_fetch_timeout: float = Field(
        default=10.0, gt=0, description="Total seconds for one URL image fetch"
    )
    image_fetch_connect_timeout: float = Field(
        default=3.0, gt=0, description="Seconds to connect for one URL image fetch"
    )
    image_fetch_max_redirects: int = Field(
        default=3, ge=0, description="Same-host redirects followed per URL image"
    )
    image_fetch_concurrency: int = Field(
        default=16, ge=1, description="URL image fetches in flight per hashing worker"
    )
    policy: Path | None = None

    # --- signing
    signing_key: SecretStr | None = None
    signing_key_id: str = "vigil-dev"
    allow_dev_signing_key: bool = Field(
        default=False,
        description="Sign with a random per-process key when none is set (demo only)",
    )

    # --- pager (used by the notify agent)
    alertmanager_url: str | None = None
    pagerduty_url: str | None = None
    pagerduty_routing_key: SecretStr | None = None
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    forum_webhook_url: str | None = Field(
        default=None,
        description="Role forum_webhook POSTs every verdict and takedown here (unset: idle)",
    )
    forum_webhook_secret: SecretStr | None = Field(
        default=None, description="HMAC key of the forum webhook's X-Vigil-Signature header"
    )

    # --- decisions
    decide_deadline_ms: int = Field(
        default=5000, ge=10, description="How long decide waits for required detectors"
    )
    decide_memory: int = Field(
        default=200_000, ge=1,
        description="Decided contents remembered per decide worker (half as many decisions "
                    "for reviews); the oldest are forgotten first",
    )
    burst_checkpoint_seconds: float = Field(
        default=3600.0, ge=0,
        description="How often burst checkpoints each partition's detector state (0: never)",
    )
    burst_checkpoint_key: SecretStr | None = Field(
        default=None,
        description="HMAC key of burst's state checkpoints (its own secret, not the signing "
        "key; unset and no file: no checkpoints, except `vigil run`'s dev key)",
    )
    burst_checkpoint_key_file: Path | None = Field(
        default=None, description="File holding the checkpoint key (instead of the variable)"
    )
    policy_reload_seconds: float = Field(
        default=2.0, gt=0,
        description="How often decide, notify and burst check the policy file's mtime",
    )

    # --- notify (pager delivery; see docs/paging.md)
    notify_retry_initial_seconds: float = Field(
        default=0.5, gt=0, description="First retry delay of a failed alert delivery"
    )
    notify_retry_max_seconds: float = Field(
        default=30.0, gt=0, description="Longest delay between delivery retries (backoff cap)"
    )
    notify_timeout_seconds: float = Field(
        default=10.0, gt=0, description="Timeout of one delivery request"
    )
    notify_max_rejected_attempts: int = Field(
        default=5, ge=1,
        description="Attempts before an alert a destination rejects (4xx) is given up",
    )

    # --- faust tuning (DESIGN §1: defaults leave 10× throughput and 25 s of start-up unused)
    app_id: str = "vigil"
    log_level: Literal["debug", "info", "warn", "error", "crit"] = "warn"
    consumer_max_fetch_size: int = 8 * 1024 * 1024
    consumer_fetch_max_wait_ms: int = Field(
        default=50, ge=1, le=5000,
        description="Longest a fetch waits for data (Tansu holds it this long: latency per hop)",
    )
    broker_max_poll_records: int = 10_000
    broker_session_timeout: float = 6.0
    broker_rebalance_timeout: float = 6.0
    broker_heartbeat_interval: float = 1.0
    batch_size: int = Field(default=500, ge=1, description="Events per agent batch")
    batch_within: float = Field(default=0.05, gt=0, description="Max seconds to fill a batch")

    # --- classification (role `classify`, models/; numbers behind the defaults: docs/models.md)
    models_dir: Path | None = Field(
        default=None,
        description="Model files built at install time by `python -m models.build`; "
        "default: models/build inside the installed package",
    )
    model_intra_op_threads: int = Field(
        default=1, ge=1, description="onnxruntime threads inside one inference call"
    )
    model_inter_op_threads: int = Field(
        default=1, ge=1, description="onnxruntime threads across graph nodes (sequential graphs)"
    )
    model_graph_optimization: Literal["disable", "basic", "extended", "all"] = Field(
        default="all", description="onnxruntime graph optimisation level"
    )
    classify_threads: int = Field(
        default=0, ge=0, description="Inference threads of the classify role; 0 = one per CPU"
    )
    classify_batch_size: int = Field(
        default=32, ge=1,
        description="Images per classify batch (split across the threads; posts go a whole "
        "poll at a time)",
    )
    classify_batch_within: float = Field(
        default=0.02, gt=0,
        description="Ignored since classify consumes through the plain loop (a batch is what "
        "one poll fetched); kept so existing configurations stay valid",
    )
    classify_inflight: int = Field(
        default=2, ge=1,
        description="Batches per input topic being classified at once (back-pressure bound)",
    )
    text_rules: Path | None = Field(
        default=None, description="TOML file of per-board text rules (hot-reloaded)"
    )
    text_rules_reload_seconds: float = Field(
        default=2.0, gt=0, description="How often the classify role checks the text rules file"
    )

    # --- moderator console (/console/) and public /status (docs/console.md)
    console_enabled: bool | None = Field(
        default=None,
        description="Serve the console and /status and run its feed consumer in this process; "
        "unset: on for `vigil run`, off for `vigil worker` (turn it on in the one process that "
        "serves moderators: claims, sessions and audit are per process)",
    )
    console_users_file: Path | None = Field(
        default=None, description="Console accounts (JSON); default <data_dir>/console-users.json"
    )
    console_session_secret: SecretStr | None = Field(
        default=None, description="Signs session cookies; default: random, kept in the data dir"
    )
    console_session_secret_file: Path | None = Field(
        default=None, description="File holding the session secret (instead of the variable)"
    )
    console_session_ttl_minutes: float = Field(
        default=720, gt=0, description="A console login expires after this long"
    )
    console_cookie_secure: bool = Field(
        default=False, description="Mark the session cookie Secure (set it behind HTTPS)"
    )
    console_claim_minutes: float = Field(
        default=15, gt=0, description="How long a moderator's claim on an item lasts"
    )
    console_sla_minutes: float = Field(
        default=60, gt=0, description="Queue items older than this are flagged overdue"
    )
    console_unblur_minutes: float = Field(
        default=5, gt=0, description="How long one un-blur grant lasts"
    )
    console_volunteers_can_unblur: bool = Field(
        default=False, description="Let the volunteer role un-blur thumbnails (moderators can)"
    )
    console_login_max_failures: int = Field(
        default=10, ge=1, description="Failed logins per address or user per 15 minutes"
    )
    console_on_call: str = Field(
        default="", description="Who is on call in staffed hours (shown in the console banner)"
    )
    console_on_call_unstaffed: str = Field(
        default="", description="Who is on call outside staffed hours (empty: nobody)"
    )
    console_support_links: dict[str, str] = Field(
        default_factory=dict,
        description="Support links on /status for people who saw harmful material: label → URL "
        "(env: JSON object)",
    )
    console_status_guidance: str = Field(
        default="Report anything that breaks the rules with the forum's Report button, at any "
        "hour: reports are checked automatically at once, and a person reviews them. Do not "
        "download, share or re-post illegal images, not even to warn others.",
        description="Reporting guidance shown on /status (e.g. what to do at night)",
    )
    console_evidence_retention: Literal["off", "hash_match", "confirmed"] = Field(
        default="off",
        description="Keep the image of an item for evidence export, encrypted at rest: off "
        "(never), hash_match (bank matches), confirmed (bank matches and human-confirmed items)",
    )
    console_evidence_retention_days: float = Field(
        default=90, gt=0, description="Retained evidence images are deleted after this long"
    )
    console_evidence_key: SecretStr | None = Field(
        default=None,
        description="AES-256-GCM key of the evidence vault: 32 bytes, base64 (needed when "
        "retention is on; never in the repository)",
    )
    console_evidence_key_file: Path | None = Field(
        default=None, description="File holding the evidence key (instead of the variable)"
    )

    @field_validator("broker")
    @classmethod
    def _check_broker(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        for part in value.split(","):
            url = urlsplit(part if "://" in part else f"kafka://{part}")
            if url.scheme != "kafka" or not url.hostname or not url.port:
                raise ValueError(f"expected kafka://host:port, got {part!r}")
        return value

    @property
    def bootstrap_servers(self) -> str:
        """`host:port,...` for aiokafka; only valid once a broker is known."""
        if self.broker is None:
            raise RuntimeError("no broker: start the embedded one or set VIGIL_BROKER")
        return ",".join(p.split("://", 1)[-1] for p in self.broker.split(","))

    @property
    def banks_path(self) -> Path:
        """Folder of bank CSV files (hot-reloaded)."""
        return self.banks_dir if self.banks_dir is not None else self.data_dir / "banks"

    def with_changes(self, **changes: Any) -> Settings:
        """A validated copy with some fields replaced (settings are frozen)."""
        values = {
            name: value.get_secret_value() if isinstance(value, SecretStr) else value
            for name, value in self.model_dump().items()
        }
        return type(self).model_validate({**values, **changes})

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config = os.environ.get("VIGIL_CONFIG")
        if config:
            path = Path(config)
            if not path.is_file():
                # A typo in the path must not silently start Vigil on defaults.
                raise FileNotFoundError(2, "VIGIL_CONFIG names no readable file", str(path))
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment (and `VIGIL_CONFIG` TOML), with explicit overrides."""
    return Settings(**overrides)

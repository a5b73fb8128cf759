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

    # --- state and banks
    data_dir: Path = Path("var")
    banks_dir: Path | None = Field(default=None, description="Default: <data_dir>/banks")
    banks_reload_seconds: float = Field(default=2.0, gt=0)
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

    # --- decisions
    decide_deadline_ms: int = Field(
        default=5000, ge=10, description="How long decide waits for required detectors"
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

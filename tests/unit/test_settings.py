"""vigil.settings: VIGIL_* environment, the VIGIL_CONFIG TOML file, validation and secrets."""

from __future__ import annotations

import os
from pathlib import Path

import pydantic
import pytest

from vigil.settings import Settings, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No VIGIL_* from the machine running the tests, and no stray config files."""
    for name in list(os.environ):
        if name.upper().startswith("VIGIL_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_defaults_without_env() -> None:
    settings = load_settings()
    assert settings.broker is None
    assert settings.topic_prefix == ""
    assert settings.data_dir == Path("var")
    assert settings.signing_key is None


@pytest.mark.parametrize(
    ("value", "bootstrap"),
    [
        ("kafka://h:9092", "h:9092"),
        ("kafka://k1.internal:9092,kafka://k2.internal:9093", "k1.internal:9092,k2.internal:9093"),
        ("h:9092", "h:9092"),
    ],
)
def test_broker_accepts_kafka_urls(
    monkeypatch: pytest.MonkeyPatch, value: str, bootstrap: str
) -> None:
    monkeypatch.setenv("VIGIL_BROKER", value)
    settings = Settings()
    assert settings.broker == value
    assert settings.bootstrap_servers == bootstrap


@pytest.mark.parametrize(
    "value",
    ["http://x", "http://x:9092", "kafka://h", "kafka://:9092", "kafka://h:9092,http://g:1",
     "kafka://h:port"],
)
def test_broker_rejects_other_urls(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("VIGIL_BROKER", value)
    with pytest.raises(pydantic.ValidationError) as info:
        Settings()
    assert "broker" in str(info.value)


def test_empty_broker_means_embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_BROKER", "")
    settings = Settings()
    assert settings.broker is None
    with pytest.raises(RuntimeError):
        _ = settings.bootstrap_servers


def test_env_values_are_typed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_WEB_PORT", "9181")
    monkeypatch.setenv("VIGIL_DECIDE_DEADLINE_MS", "250")
    monkeypatch.setenv("VIGIL_BANKS_RELOAD_SECONDS", "0.5")
    monkeypatch.setenv("VIGIL_ALLOW_DEV_SIGNING_KEY", "true")
    monkeypatch.setenv("VIGIL_LOG_LEVEL", "info")
    settings = Settings()
    assert settings.web_port == 9181
    assert settings.decide_deadline_ms == 250
    assert settings.banks_reload_seconds == 0.5
    assert settings.allow_dev_signing_key is True
    assert settings.log_level == "info"


@pytest.mark.parametrize(
    ("name", "value"),
    [("VIGIL_WEB_PORT", "eighty"), ("VIGIL_WEB_PORT", "70000"), ("VIGIL_LOG_LEVEL", "loud"),
     ("VIGIL_TOPIC_PARTITIONS", "0"), ("VIGIL_DECIDE_DEADLINE_MS", "1")],
)
def test_invalid_values_are_rejected(monkeypatch: pytest.MonkeyPatch, name: str,
                                     value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(pydantic.ValidationError):
        Settings()


def test_toml_file_with_env_overriding_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "vigil.toml"
    config.write_text(
        'web_port = 9000\n'
        'topic_prefix = "from-toml."\n'
        'decide_deadline_ms = 1234\n'
        'broker = "kafka://toml-host:9092"\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("VIGIL_CONFIG", str(config))
    monkeypatch.setenv("VIGIL_WEB_PORT", "9100")
    settings = Settings()
    assert settings.web_port == 9100  # env wins over TOML
    assert settings.topic_prefix == "from-toml."  # TOML wins over defaults
    assert settings.decide_deadline_ms == 1234
    assert settings.broker == "kafka://toml-host:9092"
    # explicit overrides win over both
    assert load_settings(web_port=9200, topic_prefix="x.").web_port == 9200


def test_toml_values_are_validated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "vigil.toml"
    config.write_text('broker = "http://nope"\n', encoding="utf-8")
    monkeypatch.setenv("VIGIL_CONFIG", str(config))
    with pytest.raises(pydantic.ValidationError):
        Settings()


def test_banks_path_defaults_under_data_dir(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    assert Settings().banks_path == Path("var") / "banks"
    monkeypatch.setenv("VIGIL_DATA_DIR", str(tmp_path / "state"))
    assert Settings().banks_path == tmp_path / "state" / "banks"
    monkeypatch.setenv("VIGIL_BANKS_DIR", str(tmp_path / "elsewhere"))
    assert Settings().banks_path == tmp_path / "elsewhere"


def test_secrets_are_not_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = {
        "VIGIL_SIGNING_KEY": "sk-very-secret-1",
        "VIGIL_WEBHOOK_SECRET": "wh-very-secret-2",
        "VIGIL_PAGERDUTY_ROUTING_KEY": "pd-very-secret-3",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("VIGIL_SIGNING_KEY_ID", "prod-2025")
    settings = Settings()
    shown = repr(settings) + str(settings) + settings.model_dump_json()
    for value in secrets.values():
        assert value not in shown
    assert "prod-2025" in shown  # key ids are not secret
    assert settings.signing_key is not None
    assert settings.signing_key.get_secret_value() == "sk-very-secret-1"
    assert settings.webhook_secret is not None
    assert settings.webhook_secret.get_secret_value() == "wh-very-secret-2"
    assert settings.pagerduty_routing_key is not None
    assert settings.pagerduty_routing_key.get_secret_value() == "pd-very-secret-3"


def test_settings_are_frozen_and_copied_with_changes() -> None:
    settings = Settings()
    with pytest.raises(pydantic.ValidationError):
        settings.web_port = 1  # type: ignore[misc]
    changed = settings.with_changes(topic_prefix="t1.")
    assert changed.topic_prefix == "t1." and settings.topic_prefix == ""


def test_unknown_vigil_variables_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_NOT_A_SETTING", "x")
    Settings()


def test_with_changes_validates() -> None:
    with pytest.raises(pydantic.ValidationError):
        Settings().with_changes(broker="http://not-kafka")


def test_missing_config_file_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VIGIL_CONFIG", str(tmp_path / "typo.toml"))
    with pytest.raises(FileNotFoundError, match="VIGIL_CONFIG"):
        Settings()

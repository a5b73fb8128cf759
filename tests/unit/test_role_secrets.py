"""Which role gets which secret: the takedown signing key only where decisions are signed, the
burst checkpoint key only where burst runs, and neither stands in for the other."""

from __future__ import annotations

from pathlib import Path

import pytest

from vigil.app import ConfigError, build_app, checkpoint_key
from vigil.settings import Settings


def settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(broker="kafka://127.0.0.1:9", data_dir=tmp_path, **values)  # type: ignore[arg-type]


def test_a_burst_worker_gets_the_checkpoint_key_and_never_the_signing_key(tmp_path: Path) -> None:
    s = settings(tmp_path, signing_key="takedown-secret", burst_checkpoint_key="state-secret")
    _, ctx = build_app(s, ["burst"])
    assert ctx.checkpoint_key == b"state-secret"
    assert ctx.signer is None
    _, ctx = build_app(s, ["decide"])
    assert ctx.checkpoint_key is None and ctx.signer is not None


def test_the_signing_key_does_not_double_as_the_checkpoint_key(tmp_path: Path) -> None:
    assert checkpoint_key(settings(tmp_path, signing_key="takedown-secret")) is None


def test_checkpoint_key_from_a_file_or_a_dev_key_on_one_box(tmp_path: Path) -> None:
    key_file = tmp_path / "checkpoint.key"
    key_file.write_text("from-a-file\n")
    assert checkpoint_key(settings(tmp_path, burst_checkpoint_key_file=key_file)) == b"from-a-file"
    dev = checkpoint_key(settings(tmp_path, allow_dev_signing_key=True))
    assert dev and dev == checkpoint_key(settings(tmp_path, allow_dev_signing_key=True))
    assert (tmp_path / "dev-burst-checkpoint-key").stat().st_mode & 0o077 == 0


def test_a_decide_worker_without_a_signing_key_refuses_to_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        build_app(settings(tmp_path), ["decide"])

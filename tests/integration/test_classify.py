"""The classify role end to end: posts and images through a `vigil worker --agents
intake,classify` on the real broker → `nsfw_image` / `text_abuse` signals with model, score and
threshold; and a worker whose model file is missing refuses to start, naming it."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw

from models.build import ensure_built
from streams.topics import IMAGES, POSTS, SIGNALS
from tests.integration.helpers import (
    Worker,
    collect,
    image_event,
    post_event,
    produce,
    start_vigil,
    topic,
    unique_prefix,
    vigil_env,
    wait_ready,
)
from vigil.broker import EmbeddedBroker

pytestmark = pytest.mark.integration


def drawn_jpeg() -> bytes:
    img = Image.new("RGB", (320, 240), (30, 110, 200))
    ImageDraw.Draw(img).rectangle([40, 40, 200, 180], fill=(250, 220, 40))
    out = io.BytesIO()
    img.save(out, format="JPEG")
    return out.getvalue()


@pytest.fixture(scope="module")
def worker(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    ensure_built()
    data_dir: Path = tmp_path_factory.mktemp("vigil-classify")
    rules = data_dir / "rules.toml"
    rules.write_text('version = "it-1"\n[[rule]]\nid = "incitement"\nterms = ["kys"]\n')
    env = vigil_env(broker.url, unique_prefix(), data_dir, VIGIL_TEXT_RULES=str(rules))
    running = start_vigil(["worker", "--agents", "intake,classify"], env, data_dir)
    try:
        wait_ready(running)
        yield running
    finally:
        running.stop()


def signals_for(detector: str, ids: set[str]) -> Any:
    def done(events: list[dict[str, Any]]) -> bool:
        return ids <= {e["data"]["content_id"] for e in events
                       if e["data"]["detector"] == detector}
    return done


async def test_posts_and_images_get_classifier_signals(
    worker: Worker, broker: EmbeddedBroker
) -> None:
    posts = {"p-kind": "Any tips for getting a toddler to sleep?",
             "p-abuse": "Shut up, you stupid bitch.",
             "p-rule": "just kys"}
    await produce(broker.bootstrap, topic(worker, POSTS),
                  [json.dumps(post_event(pid, body)).encode() for pid, body in posts.items()])
    url_image = image_event("img-url", b"")
    del url_image["data"]["data_b64"]
    url_image["data"]["url"] = "https://images.example/x.png"
    await produce(broker.bootstrap, topic(worker, IMAGES), [
        json.dumps(image_event("img-drawn", drawn_jpeg())).encode(),
        json.dumps(url_image).encode(),
    ])
    text = await collect(broker.bootstrap, topic(worker, SIGNALS),
                         signals_for("text_abuse", set(posts)))
    by_post = {e["data"]["content_id"]: e["data"] for e in text
               if e["data"]["detector"] == "text_abuse"}
    assert by_post["p-kind"]["status"] == "clear"
    assert by_post["p-abuse"]["status"] == "match"
    assert by_post["p-rule"]["status"] == "match"
    assert by_post["p-rule"]["evidence"]["rule"] == "incitement"
    for data in by_post.values():
        assert data["model"].startswith("alt_profanity_check@")
        assert 0 <= data["score"] <= 1 and 0 < data["threshold"] < 1
        assert data["detector_version"] == "text_abuse-1"

    images = await collect(broker.bootstrap, topic(worker, SIGNALS),
                           signals_for("nsfw_image", {"img-drawn", "img-url"}))
    by_image = {e["data"]["content_id"]: e["data"] for e in images
                if e["data"]["detector"] == "nsfw_image"}
    drawn = by_image["img-drawn"]
    assert drawn["status"] == "clear" and drawn["model"] == "open_nsfw@1.0.0"
    assert drawn["score"] < drawn["threshold"]
    assert drawn["post_id"] == "p1" and drawn["author_id"] == "u1"
    assert by_image["img-url"]["status"] == "unchecked"
    assert "url" in by_image["img-url"]["evidence"]["reason"]


def test_missing_model_file_stops_start_up_naming_it(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    empty = tmp_path / "no-models"
    empty.mkdir()
    env = vigil_env(broker.url, unique_prefix(), tmp_path, VIGIL_MODELS_DIR=str(empty))
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "vigil.cli", "worker", "--agents", "classify"],
        env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )
    assert result.returncode != 0
    expected = f"model alt_profanity_check@1.9.1+onnx1: file {empty / 'alt_profanity_check.onnx'}"
    assert expected in result.stderr, result.stderr[-2000:]
    assert "python -m models.build" in result.stderr

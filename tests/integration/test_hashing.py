"""End to end through the embedded broker: PDQ blocks a re-encoded copy of a banked image.

Own module-scoped worker (intake, hashing, decide) with a unique topic prefix and a bank that
lists only the banned picture's PDQ: its SHA-256 and MD5 are not banked, so only the perceptual
match can block the resized JPEG copy.
"""

from __future__ import annotations

import io
import json
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from agents.hashes import Pdq
from streams.topics import IMAGES, SIGNALS, VERDICTS
from tests.integration.helpers import (
    Worker,
    collect,
    image_event,
    produce,
    running,
    topic,
    unique_prefix,
    vigil_env,
    write_bank,
)
from vigil.broker import EmbeddedBroker

pytestmark = pytest.mark.integration


def picture(seed: int, size: tuple[int, int] = (400, 300)) -> Image.Image:
    rnd = random.Random(seed)
    img = Image.new("RGB", size, (rnd.randrange(256), 120, 60))
    draw = ImageDraw.Draw(img)
    for _ in range(10):
        x, y = rnd.randrange(size[0]), rnd.randrange(size[1])
        draw.ellipse([x, y, x + rnd.randrange(20, 200), y + rnd.randrange(20, 150)],
                     fill=(rnd.randrange(256), rnd.randrange(256), rnd.randrange(256)))
    draw.text((20, 20), f"picture {seed}", fill=(255, 255, 255))
    return img


def encoded(img: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt, **options)
    return out.getvalue()


BANNED = picture(1)
COPY = encoded(BANNED.resize((200, 150)), "JPEG", quality=40)


@pytest.fixture(scope="module")
def worker(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    data_dir: Path = tmp_path_factory.mktemp("vigil-hashing")
    write_bank(data_dir, "pdq-bank",
               f"pdq,{Pdq().compute(encoded(BANNED, 'PNG'))},pdq-bank,csam,critical")
    env = vigil_env(broker.url, unique_prefix(), data_dir)
    with running(["worker", "--agents", "intake,hashing,decide"], env, data_dir) as worker:
        yield worker


def verdict_of(events: list[dict], content_id: str) -> dict | None:  # type: ignore[type-arg]
    return next((e for e in events if e["data"]["content_id"] == content_id), None)


async def test_resized_jpeg_copy_is_blocked_and_zero_bytes_held(
    worker: Worker, broker: EmbeddedBroker
) -> None:
    other = encoded(picture(2), "PNG")
    await produce(broker.bootstrap, topic(worker, IMAGES), [
        json.dumps(image_event("img-copy", COPY)).encode(),
        json.dumps(image_event("img-empty", b"")).encode(),
        json.dumps(image_event("img-other", other)).encode(),
    ])
    wanted = ("img-copy", "img-empty", "img-other")
    verdicts = await collect(broker.bootstrap, topic(worker, VERDICTS),
                             lambda es: all(verdict_of(es, c) for c in wanted))
    copy = verdict_of(verdicts, "img-copy")["data"]  # type: ignore[index]
    assert copy["verdict"] == "block", copy
    assert any(r["detector"] == "pdq" and r.get("bank") == "pdq-bank" for r in copy["reasons"])
    assert verdict_of(verdicts, "img-empty")["data"]["verdict"] == "hold"  # type: ignore[index]
    assert verdict_of(verdicts, "img-other")["data"]["verdict"] == "allow"  # type: ignore[index]

    signals = await collect(
        broker.bootstrap, topic(worker, SIGNALS),
        lambda es: sum(e["data"]["detector"] == "pdq" for e in es) >= 3)
    pdq = {e["data"]["content_id"]: e["data"] for e in signals if e["data"]["detector"] == "pdq"}
    assert pdq["img-copy"]["status"] == "match" and pdq["img-copy"]["distance"] <= 31
    assert pdq["img-empty"]["status"] == "unchecked"
    assert pdq["img-empty"]["evidence"]["reason"] == "zero bytes"
    assert len(pdq["img-other"]["evidence"]["pdq"]) == 64  # the image's own PDQ, for spray

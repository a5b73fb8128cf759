"""The hostile-input suite of issue 9, generated (nothing harmful is committed).

One list, `cases()`, and one way to run an input and measure it (`measure`), used by the RSS
test (`tests/integration/test_hostile_rss.py`) and the bench (`bench/hostile.py`), so both
measure the same inputs the same way. Each case is one raw Kafka value for
one input topic and what the pipeline must answer with: a verdict for its content id, or a
dead letter whose `original` is the value itself.

The `benign` case (a large but ordinary 2000×1500 screenshot-like PNG) is the yardstick: an
image a forum accepts every minute. A hostile input may cost memory, but not much more than that.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import struct
import time
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from PIL import Image, ImageDraw

from streams.topics import IMAGES, POSTS, TopicSpec
from tests.integration.helpers import Worker, cloud_event, image_event, post_event

BENIGN = "benign"
#: The URL cases' hosts, allow-listed (`VIGIL_IMAGE_URL_ALLOWLIST`) so that the fetcher's address
#: checks refuse them, not the allow-list: an operator's list can name a host that resolves there.
URL_ALLOWLIST = "169.254.169.254,127.0.0.1,10.0.0.1"


@dataclass(frozen=True)
class Case:
    """One hostile (or the benign) input: where it goes and how it must come out."""

    name: str
    spec: TopicSpec
    value: bytes
    #: `verdict`: a verdict for `content_id`; `deadletter`: a dead letter carrying `value`.
    expect: Literal["verdict", "deadletter"]
    content_id: str = ""


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(
        ">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def bomb_png(side: int = 20_000) -> bytes:
    """A real side×side 1-bit all-black PNG: ≈ 50 KB on the wire, 400 Mpx decoded."""
    row = b"\x00" * (1 + side // 8)
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", body) + _chunk(
        b"IEND", b"")


def screenshot(size: tuple[int, int] = (2000, 1500)) -> Image.Image:
    """An ordinary large image: gradient bands and shapes (compresses like a screenshot)."""
    img = Image.linear_gradient("L").resize(size).convert("RGB")
    draw = ImageDraw.Draw(img)
    for i in range(12):
        x, y = (i * 157) % size[0], (i * 97) % size[1]
        draw.rectangle([x, y, x + 300, y + 120], fill=(20 * i % 255, 120, 240 - 15 * i))
        draw.ellipse([y, x % size[1], y + 200, x % size[1] + 200], fill=(240, 30 * i % 255, 40))
    return img


def encoded(img: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt, **options)
    return out.getvalue()


def many_frame_gif(frames: int = 10_000) -> bytes:
    """A GIF with `frames` 8×8 frames, alternating so none is merged into the previous one."""
    black, white = Image.new("L", (8, 8), 0), Image.new("L", (8, 8), 255)
    sequence = [white if i % 2 else black for i in range(1, frames)]
    return encoded(black, "GIF", save_all=True, append_images=sequence, duration=10)


def zip_jpeg_polyglot() -> bytes:
    """A JPEG with a zip archive appended: both a valid image and a valid archive."""
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("payload.txt", "not for you " * 1000)
    return encoded(screenshot((320, 240)), "JPEG") + archive.getvalue()


def _image(name: str, tag: str, data: bytes, content_type: str = "image/png") -> Case:
    event = image_event(f"hostile-{name}{tag}", data)
    event["data"]["content_type"] = content_type
    return Case(name, IMAGES, json.dumps(event).encode(), "verdict", f"hostile-{name}{tag}")


def _image_url(name: str, tag: str, url: str) -> Case:
    event = image_event(f"hostile-{name}{tag}", b"")
    del event["data"]["data_b64"]
    event["data"]["url"] = url
    return Case(name, IMAGES, json.dumps(event).encode(), "verdict", f"hostile-{name}{tag}")


def _post(name: str, tag: str, body: str) -> Case:
    event = post_event(f"hostile-{name}{tag}", body)
    return Case(name, POSTS, json.dumps(event).encode(), "verdict", f"hostile-{name}{tag}")


def _raw_post(name: str, value: bytes) -> Case:
    return Case(name, POSTS, value, "deadletter")


def cases(tag: str = "", *, big_post_mb: int = 10) -> list[Case]:
    """The benign yardstick first, then every hostile input of issue 9 that reaches Kafka.

    `tag` suffixes every content id (decide answers each content id once, so a repeated round
    needs fresh ids); dead-letter cases are matched by their bytes, which stay the same.

    (Ingest's own 1 MB body limit and the fetcher's redirect checks have their own tests; here
    the inputs are produced straight to the input topics, past ingest.)
    """
    big = screenshot()
    valid = json.dumps(post_event("hostile-raw")).encode()
    words = ("lorem ipsum dolor sit amet consectetur " * (big_post_mb * 1024 * 1024 // 39 + 1))
    return [
        _image(BENIGN, tag, encoded(big, "PNG")),
        _image("decompression-bomb", tag, bomb_png()),
        _image("1x100000-px", tag, encoded(Image.new("L", (1, 100_000), 128), "PNG")),
        _image("10000-frame-gif", tag, many_frame_gif(), "image/gif"),
        _image("truncated-jpeg", tag, encoded(big, "JPEG", quality=90)[:60_000], "image/jpeg"),
        _image("zero-bytes", tag, b""),
        _image("zip-jpeg-polyglot", tag, zip_jpeg_polyglot(), "image/jpeg"),
        _image("wrong-content-type", tag, b"<?php system($_GET['c']); ?>" * 40, "image/jpeg"),
        _image_url("url-metadata-ip", tag, "https://169.254.169.254/latest/meta-data/"),
        _image_url("url-loopback", tag, "https://127.0.0.1:1/x.png"),
        _image_url("url-private", tag, "https://10.0.0.1/x.png"),
        _post(f"{big_post_mb}-mb-post", tag, words[: big_post_mb * 1024 * 1024]),
        _post("nul-bytes", tag, "hello\x00forum\x00" * 100),
        _raw_post("invalid-utf-8", valid.replace(b'"hostile-raw"', b'"p-\xff\xfe"')),
        _raw_post("deep-nesting",
                  valid[:-2] + b', "x": ' + b"[" * 200_000 + b"]" * 200_000 + b"}}"),
        _raw_post("huge-number", valid[:-2] + b', "created_at": 1' + b"0" * 100_000 + b"}}"),
        _raw_post("zero-byte-message", b""),
        Case("base64-garbage", IMAGES, json.dumps(cloud_event("forum.image.uploaded", {
            "image_id": "hostile-b64", "author": {"id": "u1"},
            "data_b64": base64.b64encode(b"x").decode() + "!!!"})).encode(), "deadletter"),
    ]


# ------------------------------------------------------ running one input and its memory cost


MIB = 1024 * 1024
#: Large enough for the 10 MB post (the producer's default request limit is 1 MB).
MAX_REQUEST = 16 * MIB


def proc_kb(pid: int, field_name: str) -> int:
    """One `Vm*` field of `/proc/<pid>/status`, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise KeyError(field_name)


def reset_peak(pid: int) -> None:
    """Make `VmHWM` start again from the current RSS (Linux `clear_refs` value 5)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


@dataclass
class Answers:
    """Verdicts by content id and dead letters by their original bytes, as they arrive."""

    verdicts: dict[str, dict[str, Any]] = field(default_factory=dict)
    dead: Counter[bytes] = field(default_factory=Counter)
    dead_reasons: dict[bytes, str] = field(default_factory=dict)

    def add(self, event: dict[str, Any]) -> None:
        data = event["data"]
        if "original" in data:
            original = base64.b64decode(data["original"])
            self.dead[original] += 1
            self.dead_reasons[original] = data["reason"]
        else:
            self.verdicts[data["content_id"]] = data


async def listen(bootstrap: str, topics: list[str], answers: Answers) -> None:
    """Read `topics` from the start into `answers` until cancelled (no group: nothing shared)."""
    consumer = AIOKafkaConsumer(
        *topics, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None,
        enable_auto_commit=False, fetch_max_wait_ms=50, max_partition_fetch_bytes=MAX_REQUEST,
    )
    await consumer.start()
    try:
        while True:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for record in records:
                    answers.add(json.loads(record.value))
    finally:
        await consumer.stop()


@dataclass
class Measured:
    """One input's memory cost (MB) and its answer."""

    peak: float
    retained: float
    seconds: float
    answer: str


async def measure(worker: Worker, producer: AIOKafkaProducer, answers: Answers, case: Case,
                  timeout: float) -> Measured:
    """Produce `case`, wait for its answer, return the worker's peak and retained RSS growth."""
    pid = worker.proc.pid
    before = proc_kb(pid, "VmRSS")
    reset_peak(pid)
    dead_before = answers.dead[case.value]
    started = time.monotonic()
    await producer.send_and_wait(case.spec.full_name(worker.prefix), case.value, key=b"hostile")
    answer = "no answer"
    while time.monotonic() - started < timeout:
        if worker.proc.poll() is not None:
            answer = f"WORKER EXITED {worker.proc.returncode}"
            break
        if case.expect == "verdict" and case.content_id in answers.verdicts:
            data = answers.verdicts[case.content_id]
            answer = data["verdict"]
            if data.get("reasons"):
                first = data["reasons"][0]
                answer += f" ({first['detector']}: {first['signal']})"
            break
        if case.expect == "deadletter" and answers.dead[case.value] > dead_before:
            answer = "dead letter: " + answers.dead_reasons[case.value][:40]
            break
        await asyncio.sleep(0.02)
    seconds = time.monotonic() - started
    peak, after = proc_kb(pid, "VmHWM"), proc_kb(pid, "VmRSS")
    return Measured((peak - before) / 1024, (after - before) / 1024, seconds, answer)


async def warm_up(worker: Worker, producer: AIOKafkaProducer, answers: Answers,
                  listener: asyncio.Task[None]) -> None:
    """Posts and small benign images until their verdicts come back (models loaded, pools up)."""
    small = encoded(screenshot((320, 240)), "PNG")
    ids = []
    for i in range(5):
        for event, spec in ((post_event(f"warm-p{i}", "a friendly warm-up post"), POSTS),
                            (image_event(f"warm-i{i}", small), IMAGES)):
            await producer.send_and_wait(spec.full_name(worker.prefix),
                                         json.dumps(event).encode(), key=b"warm")
            ids.append(event["data"].get("image_id") or event["data"]["post_id"])
    deadline = time.monotonic() + 180
    while not all(i in answers.verdicts for i in ids):
        if listener.done():
            listener.result()  # raises what stopped it
        if time.monotonic() > deadline:
            raise AssertionError(f"warm-up got {len(answers.verdicts)} of {len(ids)} verdicts:\n"
                             f"{worker.log()[-3000:]}")
        await asyncio.sleep(0.1)

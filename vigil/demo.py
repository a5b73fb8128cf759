"""`vigil run --demo`: a synthetic forum, a scripted night-time incident, and a live printout.

The feed is ordinary forum traffic (posts with varied text, Pillow-drawn images, the odd report)
plus, a few seconds in, the incident Vigil exists for: a brand-new account posts a known illegal
image at 02:13 at night and members report it. The demo writes a hash bank containing that image
(synthetic: a drawn picture standing in for a real hash list entry), so within seconds the newcomer
sees the image blocked before anyone could see it, a signed takedown, and a `hash_match` alert.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import itertools
import json
import random
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import click
from PIL import Image, ImageDraw

from agents.banks import import_bank
from agents.context import AgentContext
from streams.signing import verify
from streams.topics import ALERTS, IMAGES, POSTS, REPORTS, TAKEDOWNS, VERDICTS, TopicSpec
from vigil.app import dev_key
from vigil.settings import Settings

INCIDENT_AFTER_S = 6.0
BANK_NAME = "demo-hashlist"

_OPENERS = [
    "Has anyone tried", "Looking for advice on", "We finally sorted", "Quick question about",
    "Sharing what worked for us with", "Struggling a bit with", "Any tips for",
]
_TOPICS = [
    "sleep training a 9-month-old", "picky eaters", "the first week of nursery",
    "screen time rules", "potty training", "teething at night", "school lunch ideas",
    "toddler tantrums in shops", "getting a newborn to latch", "grandparents and boundaries",
]
_CLOSERS = [
    "Thanks in advance!", "Any ideas welcome.", "It took three weeks but it worked.",
    "Would love to hear your experience.", "We're exhausted.", "Happy to share more details.",
]
_KIDS = ["our son", "our daughter", "my little one", "the twins", "my eldest", "our youngest"]
_DETAILS = [
    "wakes up every two hours", "only eats pasta", "cries at drop-off", "hates the car seat",
    "refuses the bottle", "screams at bath time", "won't nap after lunch", "bites at nursery",
    "climbs out of the cot", "is scared of the dark", "asks for the tablet all day",
]
_BOARDS = ["baby", "toddlers", "school-age", "health", "off-topic"]
_DAYS = ["monday", "the weekend", "the holidays", "last week", "the move", "the new baby came"]


def banned_image() -> bytes:
    """The demo's "known illegal" image: a fixed drawing whose hash the demo bank lists."""
    img = Image.new("RGB", (320, 240), (20, 20, 20))
    draw = ImageDraw.Draw(img)
    for i in range(0, 320, 16):
        draw.line([(i, 0), (320 - i, 240)], fill=(200, 30, 30), width=3)
    draw.rectangle([100, 80, 220, 160], outline=(255, 255, 255), width=4)
    draw.text((112, 112), "DEMO: BANNED", fill=(255, 255, 255))
    return _png(img)


def benign_image(rng: random.Random) -> bytes:
    """A random little drawing (shapes on a pastel background)."""
    img = Image.new("RGB", (rng.choice([160, 200, 240]), 160),
                    tuple(rng.randint(170, 255) for _ in range(3)))
    draw = ImageDraw.Draw(img)
    for _ in range(rng.randint(2, 6)):
        x, y = rng.randint(0, 150), rng.randint(0, 120)
        colour = tuple(rng.randint(0, 200) for _ in range(3))
        if rng.random() < 0.5:
            draw.ellipse([x, y, x + rng.randint(10, 60), y + rng.randint(10, 60)], fill=colour)
        else:
            draw.rectangle([x, y, x + rng.randint(10, 60), y + rng.randint(10, 60)], fill=colour)
    return _png(img)


def _png(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def prepare(settings: Settings) -> Settings:
    """Write the demo hash bank (the banned image's sha256) into the banks folder."""
    digest = hashlib.sha256(banned_image()).hexdigest()
    source = settings.data_dir / f"{BANK_NAME}.csv"
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    source.write_text(
        "signal_type,signal,bank,label,severity\n"
        f"sha256,{digest},{BANK_NAME},csam,critical\n",
        encoding="utf-8",
    )
    import_bank(source, settings.banks_path)
    return settings


def _event(type_: str, data: dict[str, Any], when: datetime) -> bytes:
    return json.dumps({
        "specversion": "1.0", "id": f"evt-{uuid.uuid4().hex}", "source": "forum/demo",
        "type": type_, "time": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "datacontenttype": "application/json", "data": data,
    }).encode()


def _rfc3339(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


class DemoForum:
    """Generates events of a small, busy parenting forum (deterministic per seed)."""

    def __init__(self, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        now = datetime.now(timezone.utc)
        self.accounts = [
            {"id": f"u{n}", "created_at": _rfc3339(now - timedelta(days=self.rng.randint(30, 2000))),
             "is_staff": n < 3}
            for n in range(200)
        ]
        self.counter = itertools.count(1)

    def post(self, when: datetime, *, image: bytes | None = None,
             author: dict[str, Any] | None = None) -> list[tuple[TopicSpec, bytes, bytes]]:
        """A post (and its image, if any) as (topic, key, value) records."""
        n = next(self.counter)
        author = author or self.rng.choice(self.accounts)
        thread = f"t{self.rng.randint(1, 40)}"
        post_id = f"p{n}"
        # A personal middle sentence: members write their own posts, so ordinary traffic must
        # not look like copy-pasted text to the text_brigade detector (Jaccard on 3-shingles).
        age = f"{self.rng.randint(2, 30)} {self.rng.choice(['weeks', 'months'])}"
        body = " ".join([self.rng.choice(_OPENERS), self.rng.choice(_TOPICS) + "?",
                         f"{self.rng.choice(_KIDS).capitalize()} is {age} old and",
                         f"{self.rng.choice(_DETAILS)} since {self.rng.choice(_DAYS)}.",
                         self.rng.choice(_CLOSERS)])
        records = []
        image_ids = []
        if image is not None:
            image_id = f"img{n}"
            image_ids.append(image_id)
            records.append((IMAGES, post_id.encode(), _event("forum.image.uploaded", {
                "image_id": image_id, "post_id": post_id, "thread_id": thread, "author": author,
                "content_type": "image/png", "data_b64": _b64(image),
            }, when)))
        records.insert(0, (POSTS, thread.encode(), _event("forum.post.created", {
            "post_id": post_id, "thread_id": thread, "board": self.rng.choice(_BOARDS),
            "author": author, "body": body, "image_ids": image_ids,
            "created_at": _rfc3339(when),
        }, when)))
        return records

    def report(self, target_id: str, when: datetime,
               reason: str = "inappropriate image") -> tuple[TopicSpec, bytes, bytes]:
        reporter = self.rng.choice(self.accounts)
        return (REPORTS, target_id.encode(), _event("forum.report.created", {
            "report_id": f"r{next(self.counter)}", "target_type": "image",
            "target_id": target_id, "reporter": reporter, "reason": reason,
            "created_at": _rfc3339(when),
        }, when))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def register(ctx: AgentContext, settings: Settings) -> None:
    """Add the demo feed task and the printer agent to the app."""
    forum = DemoForum()
    started = time.monotonic()

    async def send(records: list[tuple[TopicSpec, bytes, bytes]]) -> None:
        for spec, key, value in records:
            await ctx.send(spec, key, value)

    async def feed_demo_forum() -> None:
        click.echo(f"demo: feeding a synthetic forum; the incident starts in "
                   f"{INCIDENT_AFTER_S:.0f} s", err=True)
        incident_done = False
        while True:
            now = datetime.now(timezone.utc)
            image = benign_image(forum.rng) if forum.rng.random() < 0.25 else None
            await send(forum.post(now, image=image))
            if not incident_done and time.monotonic() - started > INCIDENT_AFTER_S:
                incident_done = True
                night = (now - timedelta(days=1)).replace(hour=2, minute=13, second=5)
                troll = {"id": "u-new-troll", "created_at": _rfc3339(night - timedelta(minutes=9)),
                         "is_staff": False}
                records = forum.post(night, image=banned_image(), author=troll)
                image_id = next(json.loads(v)["data"]["image_id"]
                                for s, _, v in records if s is IMAGES)
                click.echo(f"demo: 02:13 at night, new account u-new-troll posts image "
                           f"{image_id} (its hash is in bank {BANK_NAME})", err=True)
                await send(records)
                await send([forum.report(image_id, night + timedelta(minutes=m))
                            for m in (1, 3, 4)])
            await asyncio.sleep(0.3)

    ctx.app.task(feed_demo_forum)

    secret = (settings.signing_key.get_secret_value().encode() if settings.signing_key
              else dev_key(settings.data_dir))
    assert ctx.signer is not None, "the demo runs decide, which signs"
    keys = {ctx.signer.key_id: secret}
    counts: dict[str, int] = {}

    def show(spec: TopicSpec) -> None:
        async def print_outputs(stream: Any) -> None:
            async for value in stream:
                event = json.loads(value)
                data = event["data"]
                if spec is VERDICTS:
                    counts[data["verdict"]] = counts.get(data["verdict"], 0) + 1
                    if data["verdict"] == "allow":
                        continue
                    click.secho(
                        f"VERDICT  {data['verdict'].upper():5} {data['content_type']} "
                        f"{data['content_id']} in {data.get('latency_ms', '?')} ms — "
                        + "; ".join(f"{r['detector']}: {r['signal']} "
                                    f"{r.get('bank', '')} {r.get('label', '')}".strip()
                                    for r in data.get("reasons", [])),
                        fg="red", bold=True)
                elif spec is TAKEDOWNS:
                    ok = verify(event, keys)
                    click.secho(
                        f"TAKEDOWN {data['action']} {data['target']['type']} "
                        f"{data['target']['id']} severity={data['severity']} "
                        f"signature={'valid' if ok else 'INVALID'} (key {event.get('sigkeyid')})",
                        fg="yellow", bold=True)
                else:
                    click.secho(f"ALERT    [{data['severity']}] {data['kind']}: "
                                f"{data['summary']} → would page on-call", fg="magenta", bold=True)

        name = f"print_{spec.name.split('.')[1]}"
        print_outputs.__name__ = print_outputs.__qualname__ = name
        ctx.app.agent(ctx.topic(spec), name=f"vigil.demo.{name}")(print_outputs)

    for spec in (VERDICTS, TAKEDOWNS, ALERTS):
        show(spec)

    async def print_counts() -> None:
        if counts:
            click.echo("verdicts so far: " + ", ".join(f"{k} {v}" for k, v in sorted(
                counts.items())), err=True)

    ctx.app.timer(10.0, name="vigil.demo.print_counts")(print_counts)

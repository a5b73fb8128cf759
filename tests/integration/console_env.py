"""Shared set-up of the console end-to-end tests (integration and browser): a `vigil worker`
whose decide holds every inline image it cannot fully check, blocks a csam-bank image, and
serves the console with three accounts."""

from __future__ import annotations

import hashlib
import io
import json
import uuid
from datetime import datetime, timezone
from pathlib import Path

from PIL import Image, ImageDraw

from tests.integration.helpers import (
    policy_text,
    Worker,
    cloud_event,
    image_event,
    start_vigil,
    unique_prefix,
    vigil_env,
    wait_ready,
)
from vigil.console.auth import Users

PASSWORD = "console-test-password"


def picture(seed: int, size: tuple[int, int] = (320, 240)) -> bytes:
    """A colourful, sharp test picture (so a blur is visible)."""
    img = Image.new("RGB", size, (30 + seed * 40 % 200, 120, 200))
    draw = ImageDraw.Draw(img)
    for x in range(0, size[0], 20):
        draw.rectangle([x, 0, x + 9, size[1]], fill=(250, 250, 250))
    draw.ellipse([60, 40, 220, 200], fill=(220, 30 + seed * 50 % 200, 40))
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


CSAM_IMAGE = picture(7)


def start_console_worker(broker_url: str, data_dir: Path, **env_extra: str) -> Worker:
    """A worker (intake, hashing, decide + console) on a unique prefix, ready."""
    banks = data_dir / "banks"
    banks.mkdir(parents=True)
    (banks / "csam-bank.csv").write_text(
        "signal_type,signal,bank,label,severity\n"
        f"sha256,{hashlib.sha256(CSAM_IMAGE).hexdigest()},test-hotline,csam,critical\n")
    # nsfw_image is required but no classify role runs: inline images are held at the deadline
    policy = policy_text(image=["sha256", "md5", "pdq", "nsfw_image"], post=[])
    (data_dir / "policy.toml").write_text(policy)
    users = Users(data_dir / "console-users.json")
    for name, role in (("vera", "volunteer"), ("mo", "moderator"), ("ada", "admin")):
        users.add(name, role, PASSWORD)
    env = vigil_env(broker_url, unique_prefix(), data_dir,
                    VIGIL_POLICY=str(data_dir / "policy.toml"), VIGIL_DECIDE_DEADLINE_MS="400",
                    VIGIL_CONSOLE_ENABLED="true",
                    VIGIL_CONSOLE_ON_CALL="Sam (staff), +00 000 000",
                    VIGIL_CONSOLE_SUPPORT_LINKS=json.dumps(
                        {"Support for moderators": "https://support.example/moderators"}),
                    **env_extra)
    worker = start_vigil(["worker", "--agents", "intake,hashing,decide"], env, data_dir)
    try:
        wait_ready(worker)
    except BaseException:
        worker.stop()
        raise
    return worker


def _now() -> str:
    # event time = now, so queue ages and SLA timers look like a live forum's
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def held_image_event(image_id: str, seed: int = 1) -> bytes:
    event = image_event(image_id, picture(seed), post_id=f"p-{image_id}")
    event["data"]["author"]["created_at"] = "2025-01-20T09:00:00Z"
    return json.dumps({**event, "time": _now()}).encode()


def csam_image_event(image_id: str) -> bytes:
    event = image_event(image_id, CSAM_IMAGE, post_id=f"p-{image_id}")
    return json.dumps({**event, "time": _now()}).encode()


def report_event(target_id: str) -> bytes:
    return json.dumps(cloud_event("forum.report.created", {
        "report_id": f"r-{uuid.uuid4().hex[:8]}", "target_type": "image", "target_id": target_id,
        "reporter": {"id": "member-1"}, "reason": "upsetting image"}, time=_now())).encode()

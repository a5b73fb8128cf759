"""Console HTTP behaviour without a broker: login, CSRF, roles, blur, csam exclusion, status."""

from __future__ import annotations

import base64
import io
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from PIL import Image

from streams.events import ReviewData
from tests.unit.test_console_store import T0, report, takedown
from vigil.console.auth import Users
from vigil.console.store import SqliteStore
from vigil.console.views import Console, ConsoleConfig

PASSWORD = "a-long-password"


def png(color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    image = Image.new("RGB", (64, 48), color)
    for x in range(0, 64, 8):  # sharp stripes: a blur must smear them
        for y in range(48):
            image.putpixel((x, y), (255, 255, 255))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


class Harness:
    def __init__(self, tmp_path: Path, **config: Any) -> None:
        self.store = SqliteStore.memory()
        self.published: list[ReviewData] = []
        self.fetched: list[tuple[str, int, int]] = []
        self.now = T0 + 120
        self.images: dict[int, bytes] = {}
        users = tmp_path / "users.json"
        for name, role in (("vol", "volunteer"), ("mod", "moderator"), ("adm", "admin")):
            Users(users).add(name, role, PASSWORD)
        self.console = Console(
            ConsoleConfig(data_dir=tmp_path, users_file=users, session_secret=b"k" * 32,
                          **config),
            self.store, self.publish, self.fetch, clock=lambda: self.now)

    async def publish(self, review: ReviewData) -> None:
        self.published.append(review)

    async def fetch(self, topic: str, partition: int, offset: int) -> bytes | None:
        self.fetched.append((topic, partition, offset))
        data = self.images.get(offset)
        if data is None:
            return None
        return json.dumps({"specversion": "1.0", "id": "e", "source": "s",
                           "type": "forum.image.uploaded",
                           "data": {"image_id": "x", "author": {"id": "u1"},
                                    "data_b64": base64.b64encode(data).decode()}}).encode()

    def add_image(self, cid: str, offset: int, **takedown_args: Any) -> None:
        self.images[offset] = png()
        author = type("A", (), {"id": "u1", "created_at": None})()
        data = type("D", (), {"author": author, "thread_id": "t1", "post_id": "p1",
                              "sha256": None})()
        self.store.record_content(f"image:{cid}", "forum.images.v1", 0, offset, data, T0)
        self.store.apply_takedown(takedown(cid, **takedown_args), T0, f"e-{cid}")


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[tuple[Harness, TestClient]]:
    h = Harness(tmp_path)
    app = web.Application()
    h.console.routes(app)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield h, client
    finally:
        await client.close()


async def login(client: TestClient, user: str) -> str:
    response = await client.post("/console/login", data={"username": user, "password": PASSWORD},
                                 allow_redirects=False)
    assert response.status == 302, await response.text()
    page = await (await client.get("/console/")).text()
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match
    return match.group(1)


async def test_unauthenticated_requests_are_refused(harness: tuple[Harness, TestClient]) -> None:
    h, client = harness
    h.add_image("img1", 1)
    response = await client.get("/console/", allow_redirects=False)
    assert response.status == 302 and response.headers["Location"].startswith("/console/login")
    assert (await client.get("/console/api/queue")).status == 401
    assert (await client.get("/console/items/image/img1/thumb",
                             allow_redirects=False)).status == 302
    response = await client.post("/console/items/image/img1/review", data={"outcome": "restore"})
    assert response.status == 401
    assert h.published == [] and h.fetched == []


async def test_wrong_password_and_rate_limit(harness: tuple[Harness, TestClient]) -> None:
    h, client = harness
    h.console.limiter.limit = 3
    for _ in range(3):
        response = await client.post("/console/login", data={"username": "mod", "password": "x"})
        assert response.status == 401
    response = await client.post("/console/login",
                                 data={"username": "mod", "password": PASSWORD})
    assert response.status == 429  # even the right password, until the window passes


async def test_post_without_csrf_is_rejected(harness: tuple[Harness, TestClient]) -> None:
    h, client = harness
    h.add_image("img1", 1)
    await login(client, "mod")
    for token in ("", "forged"):
        response = await client.post("/console/items/image/img1/review",
                                     data={"outcome": "restore", "csrf": token})
        assert response.status == 403
    assert h.published == []


async def test_restore_publishes_review_and_audits(harness: tuple[Harness, TestClient]) -> None:
    h, client = harness
    h.add_image("img1", 1)
    csrf = await login(client, "vol")
    response = await client.post("/console/items/image/img1/review",
                                 data={"outcome": "restore", "csrf": csrf},
                                 allow_redirects=False)
    assert response.status == 302
    assert h.published == [ReviewData(decision_id="d-img1", outcome="restore", reviewer="vol",
                                      note=None, content_id="img1")]
    assert h.store.item("image:img1").status == "restored"  # type: ignore[union-attr]
    assert [e["action"] for e in h.store.audit_log()][:2] == ["restore", "login"]


async def test_item_claimed_by_another_cannot_be_reviewed(
        harness: tuple[Harness, TestClient]) -> None:
    h, client = harness
    h.add_image("img1", 1)
    h.store.claim("image:img1", "someone-else", h.now, 600)
    csrf = await login(client, "mod")
    response = await client.post("/console/items/image/img1/review",
                                 data={"outcome": "confirm", "csrf": csrf})
    assert response.status == 409
    assert h.published == []
    assert "Being reviewed by" in await (await client.get("/console/")).text()


async def test_thumbnail_is_blurred_and_volunteer_cannot_unblur(
        harness: tuple[Harness, TestClient]) -> None:
    h, client = harness
    h.add_image("img1", 1)
    csrf = await login(client, "vol")
    response = await client.get("/console/items/image/img1/thumb")
    assert response.status == 200 and response.content_type == "image/jpeg"
    thumb = Image.open(io.BytesIO(await response.read()))
    assert max(thumb.size) <= 160
    # the stripes are gone: the blurred thumbnail has little contrast left
    lo, hi = thumb.convert("L").getextrema()
    assert hi - lo < 80
    response = await client.post("/console/items/image/img1/unblur", data={"csrf": csrf})
    assert response.status == 403
    assert (await client.get("/console/items/image/img1/thumb?view=clear")).status == 403
    assert "unblur_refused" in [e["action"] for e in h.store.audit_log()]


async def test_moderator_unblur_is_logged_and_serves_a_downscaled_copy(
        harness: tuple[Harness, TestClient]) -> None:
    h, client = harness
    h.add_image("img1", 1)
    csrf = await login(client, "mod")
    assert (await client.get("/console/items/image/img1/thumb?view=clear")).status == 403
    response = await client.post("/console/items/image/img1/unblur", data={"csrf": csrf})
    assert response.status == 200  # redirected to the item page
    assert "thumb?view=clear" in await response.text()
    response = await client.get("/console/items/image/img1/thumb?view=clear")
    assert response.status == 200 and response.content_type == "image/jpeg"
    assert await response.read() != h.images[1]  # re-encoded, never the original bytes
    assert "unblur" in [e["action"] for e in h.store.audit_log()]


async def test_volunteer_unblur_when_policy_allows(tmp_path: Path) -> None:
    h = Harness(tmp_path, volunteers_can_unblur=True)
    assert h.console.can_unblur(type("S", (), {"role": "volunteer"})())  # type: ignore[arg-type]


async def test_csam_item_never_fetched_nor_linked(harness: tuple[Harness, TestClient]) -> None:
    h, client = harness
    h.add_image("bad", 7, action="block", label="csam", severity="critical")
    csrf = await login(client, "adm")
    page = await (await client.get("/console/")).text()
    assert "Image withheld" in page and "bad/thumb" not in page
    detail = await (await client.get("/console/items/image/bad")).text()
    assert "bad/thumb" not in detail and "Un-blur" not in detail
    assert (await client.get("/console/items/image/bad/thumb")).status == 404
    assert (await client.get("/console/items/image/bad/thumb?view=clear")).status in (403, 404)
    assert (await client.post("/console/items/image/bad/unblur",
                              data={"csrf": csrf})).status == 403
    api = await (await client.get("/console/api/queue")).json()
    assert api["items"][0]["thumbnail"] is None
    assert h.fetched == []  # its bytes were never even read back from the broker
    evidence = await (await client.get("/console/items/image/bad/evidence.json")).json()
    assert evidence["csam"] is True and evidence["image_included"] is False
    assert evidence["matches"][0]["bank"] == "b1"
    assert "data_b64" not in json.dumps(evidence)


async def test_evidence_export_needs_moderator(harness: tuple[Harness, TestClient]) -> None:
    h, client = harness
    h.add_image("img1", 1)
    await login(client, "vol")
    assert (await client.get("/console/items/image/img1/evidence.json")).status == 403


async def test_bulk_and_page(harness: tuple[Harness, TestClient]) -> None:
    import msgspec

    from streams.events import AlertData

    h, client = harness
    h.add_image("img1", 1)
    h.add_image("img2", 2)
    h.store.apply_alert(msgspec.convert({
        "alert_id": "a1", "kind": "thread_raid", "severity": "high", "summary": "raid on t1",
        "target": {"type": "thread", "id": "t1"}, "dedup_key": "raid:t1",
        "evidence": {"decision_id": "dx"}}, AlertData))
    csrf = await login(client, "mod")
    await client.post("/console/alerts/bulk",
                      data={"dedup_key": "raid:t1", "outcome": "confirm", "csrf": csrf})
    assert sorted(r.content_id for r in h.published) == ["img1", "img2"]
    assert all(r.outcome == "confirm" for r in h.published)
    await client.post("/console/page", data={"dedup_key": "raid:t1", "csrf": csrf})
    assert h.published[-1].outcome == "escalate" and h.published[-1].decision_id == "dx"


async def test_public_status(harness: tuple[Harness, TestClient]) -> None:
    h, client = harness
    h.store.apply_report(report("r1", "img9", T0), T0)
    h.store.mark_reviewed("image:img9", "confirm", "mod", T0 + 90)
    status = await (await client.get("/status.json")).json()
    assert status["watched"] is True and status["automated"] is True
    assert status["median_report_to_action_seconds_24h"] == 90
    page = await client.get("/status?embed=1")
    assert page.status == 200 and "frame-ancestors *" in page.headers["Content-Security-Policy"]
    assert "Reports are being watched right now" in await page.text()


async def test_only_admin_restores_a_csam_block(harness: tuple[Harness, TestClient]) -> None:
    h, client = harness
    h.add_image("bad", 7, action="block", label="csam", severity="critical")
    csrf = await login(client, "mod")
    assert "Restore" not in (await (await client.get("/console/")).text()).split("bad")[-1]
    response = await client.post("/console/items/image/bad/review",
                                 data={"outcome": "restore", "csrf": csrf})
    assert response.status == 403 and h.published == []

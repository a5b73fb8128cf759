"""Incidents in the console: which posts a bulk hide covers, mitigations and their lift, the
live fragment, and the forum's optional ip_hash in the evidence export (no broker)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp.test_utils import TestClient

from streams.codec import encode
from streams.events import AlertData, PostData, ReportData, ReviewData, VerdictData
from streams.topics import POSTS, REPORTS
from tests.unit.test_console_store import T0
from tests.unit.test_console_views import Harness, harness, login  # noqa: F401 - fixture
from vigil.console import incidents
from vigil.console.feed import apply_event, ip_hash
from vigil.console.store import SqliteStore


def ts(at: float) -> datetime:
    return datetime.fromtimestamp(at, timezone.utc)


def post(pid: str, thread: str, author: str) -> PostData:
    return msgspec.convert({"post_id": pid, "thread_id": thread, "author": {"id": author},
                            "body": "hello"}, PostData)


def post_verdict(pid: str, verdict: str = "allow") -> VerdictData:
    return msgspec.convert({"content_type": "post", "content_id": pid, "verdict": verdict,
                            "decision_id": f"dec-{pid}", "thread_id": "t-raid",
                            "reasons": []}, VerdictData)


def alert(kind: str = "thread_raid", *, target: dict[str, Any] | None = None,
          evidence: dict[str, Any] | None = None, first: float = T0, last: float = T0 + 60,
          dedup: str = "raid:t-raid") -> AlertData:
    return msgspec.convert({
        "alert_id": f"a-{dedup}", "kind": kind, "severity": "high", "summary": f"{kind} here",
        "target": target if target is not None else {"type": "thread", "id": "t-raid"},
        "evidence": evidence or {}, "first_seen": ts(first), "last_seen": ts(last),
        "dedup_key": dedup}, AlertData)


def seed_raid(store: SqliteStore) -> None:
    """Three posts in the raided thread during the raid (one before its verdict arrived), one
    before the raid, one by a named account elsewhere, one unrelated."""
    posts = [("p1", "t-raid", "u1", T0 + 1), ("p2", "t-raid", "u2", T0 + 2),
             ("p3", "t-raid", "u3", T0 + 3), ("p0", "t-raid", "u0", T0 - 600),
             ("p4", "t-other", "u2", T0 + 4), ("p5", "t-other", "u9", T0 + 5)]
    for i, (pid, thread, author, at) in enumerate(posts):
        if pid == "p3":  # verdict applied before the post's own event (parallel topics)
            store.apply_verdict(post_verdict(pid), at, f"v-{pid}")
            store.record_content(f"post:{pid}", "forum.posts.v1", 0, i, post(pid, thread, author),
                                 at)
        else:
            store.record_content(f"post:{pid}", "forum.posts.v1", 0, i, post(pid, thread, author),
                                 at)
            store.apply_verdict(post_verdict(pid, "hold" if pid == "p2" else "allow"), at,
                                f"v-{pid}")


def test_content_of_alert_covers_thread_and_accounts_in_the_incident() -> None:
    store = SqliteStore.memory()
    seed_raid(store)
    store.apply_alert(alert(evidence={"sample_account_ids": ["u2"]}))
    raid = store.alert("raid:t-raid")
    assert raid is not None
    found = {c.content_id: c for c in store.content_of_alert(raid)}
    # p0 predates the raid, p5 is neither in the thread nor by a named account
    assert sorted(found) == ["p1", "p2", "p3", "p4"]
    assert found["p1"].decision_id == "dec-p1" and found["p1"].verdict == "allow"
    assert found["p3"].decision_id == "dec-p3"  # filled in from the earlier verdict
    assert store.claim("post:p2", "other-mod", T0 + 10, 600) is None
    claimed = {c.content_id for c in store.content_of_alert(raid, T0 + 20, "mod")}
    assert claimed == {"p1", "p3", "p4"}  # p2 is being reviewed by someone else
    assert len(store.content_of_alert(raid, T0 + 20, "other-mod")) == 4


def test_review_of_allowed_post_closes_it_so_the_hide_is_not_queued() -> None:
    store = SqliteStore.memory()
    seed_raid(store)
    review = msgspec.convert({"decision_id": "dec-p1", "outcome": "confirm",
                              "reviewer": "mod", "content_id": "p1"}, ReviewData)
    store.apply_review(review, T0 + 100, "r-1")
    item = store.item("post:p1")
    assert item is not None and item.status == "confirmed" and item.reviewed_by == "mod"
    assert "post:p1" not in [i.key for i in store.queue(T0 + 200)]
    store.apply_alert(alert())
    raid = store.alert("raid:t-raid")
    assert raid is not None and "p1" not in {c.content_id for c in store.content_of_alert(raid)}


def mitigation_alert(resolved: bool = False) -> AlertData:
    return alert("mitigation", dedup="mit:t-raid", evidence={
        "mitigation": "new_accounts_read_only", "decision_id": "dec-mit-1",
        "scope": "thread", "expires_at": "2025-02-04T03:13:05Z", "trigger": "thread_raid",
        "resolved": resolved})


def test_mitigation_alerts_are_split_from_incidents() -> None:
    store = SqliteStore.memory()
    store.apply_alert(alert())
    store.apply_alert(mitigation_alert())
    found, mitigations = incidents.split(store.open_alerts())
    assert [a.kind for a in found] == ["thread_raid"]
    assert len(mitigations) == 1
    m = mitigations[0]
    assert (m.what, m.scope_type, m.scope_id, m.decision_id) == (
        "new_accounts_read_only", "thread", "t-raid", "dec-mit-1")
    assert m.expires_in(T0) == pytest.approx(3600)
    store.apply_alert(mitigation_alert(resolved=True))  # lifted: gone
    assert incidents.split(store.open_alerts())[1] == []


async def test_hide_all_sends_one_confirm_per_post_with_its_decision(
        harness: tuple[Harness, TestClient]) -> None:  # noqa: F811
    h, client = harness
    seed_raid(h.store)
    h.store.apply_alert(alert(evidence={"sample_account_ids": ["u2"]}))
    csrf = await login(client, "vol")
    refused = await client.post("/console/alerts/hide",
                                data={"dedup_key": "raid:t-raid", "csrf": csrf})
    assert refused.status == 403 and h.published == []  # volunteers cannot bulk-hide
    await client.post("/console/logout", data={"csrf": csrf})
    csrf = await login(client, "mod")
    page = await (await client.get("/console/")).text()
    assert "Hide all 4 posts/images" in page
    response = await client.post("/console/alerts/hide",
                                 data={"dedup_key": "raid:t-raid", "csrf": csrf})
    assert response.status == 200
    sent = {r.content_id: r for r in h.published}
    assert sorted(sent) == ["p1", "p2", "p3", "p4"]
    assert all(r.outcome == "confirm" and r.reviewer == "mod" for r in sent.values())
    assert all(r.decision_id == f"dec-{cid}" for cid, r in sent.items())
    audit = [e for e in h.store.audit_log() if e["action"] == "bulk_hide"]
    assert len(audit) == 5  # one per post, one summary


async def test_lift_mitigation_writes_a_restore_review(
        harness: tuple[Harness, TestClient]) -> None:  # noqa: F811
    h, client = harness
    h.store.apply_alert(mitigation_alert())
    csrf = await login(client, "mod")
    page = await (await client.get("/console/")).text()
    assert "Active mitigations" in page and "new_accounts_read_only" in page
    assert "expires in 58 min" in page  # the harness clock is T0 + 120 s
    response = await client.post("/console/mitigations/lift",
                                 data={"dedup_key": "mit:t-raid", "csrf": csrf})
    assert response.status == 200
    assert [(r.decision_id, r.outcome, r.content_id) for r in h.published] == [
        ("dec-mit-1", "restore", "t-raid")]
    assert any(e["action"] == "lift_mitigation" for e in h.store.audit_log())
    bad = await client.post("/console/mitigations/lift",
                            data={"dedup_key": "raid:none", "csrf": csrf})
    assert bad.status == 400


async def test_live_fragment_versions_change_only_with_content(
        harness: tuple[Harness, TestClient]) -> None:  # noqa: F811
    h, client = harness
    await login(client, "vol")

    async def versions() -> dict[str, str]:
        response = await client.get("/console/live")
        assert response.status == 200
        html = await response.text()
        return dict(__import__("re").findall(r'id="(live-[a-z]+)" data-live data-version="(\w+)"',
                                             html))

    before = await versions()
    assert set(before) == {"live-oncall", "live-mitigations", "live-incidents"}
    h.now += 300  # only time passes: nothing to announce
    assert await versions() == before
    h.store.apply_alert(alert())
    after = await versions()
    assert after["live-incidents"] != before["live-incidents"]
    assert after["live-oncall"] == before["live-oncall"]
    await client.post("/console/logout", data={"csrf": "x"})


async def test_live_fragment_needs_a_session(harness: tuple[Harness, TestClient]  # noqa: F811
                                             ) -> None:
    _, client = harness
    response = await client.get("/console/live", allow_redirects=False)
    assert response.status == 302


def test_ip_hash_from_the_raw_event() -> None:
    raw = json.dumps({"data": {"author": {"id": "u1", "ip_hash": "hmac:abc"}}}).encode()
    assert ip_hash(raw, "author") == "hmac:abc"
    assert ip_hash(raw, "reporter") is None
    assert ip_hash(b'{"data": {"author": {"id": "u1"}}}', "author") is None


async def test_evidence_includes_ip_hashes_when_the_forum_sent_them(
        harness: tuple[Harness, TestClient], tmp_path: Path) -> None:  # noqa: F811
    h, client = harness
    event = {"post_id": "p9", "thread_id": "t1", "body": "x",
             "author": {"id": "u1", "ip_hash": "sha256:author"}}
    _, value = encode(POSTS, msgspec.convert(event, PostData), source="forum/test")
    # the typed event drops unknown fields: re-add it the way a forum sends it
    wire = json.loads(value)
    wire["data"]["author"]["ip_hash"] = "sha256:author"
    assert apply_event(h.store, POSTS, json.dumps(wire).encode(), topic="forum.posts.v1",
                       partition=0, offset=9, record_time=T0)
    h.store.apply_verdict(post_verdict("p9", "hold"), T0, "v-p9")
    report = {"report_id": "rep-1", "target_type": "post", "target_id": "p9",
              "reporter": {"id": "m1", "ip_hash": "sha256:reporter"}}
    _, value = encode(REPORTS, msgspec.convert(report, ReportData), source="forum/test")
    wire = json.loads(value)
    wire["data"]["reporter"]["ip_hash"] = "sha256:reporter"
    assert apply_event(h.store, REPORTS, json.dumps(wire).encode(), topic="forum.reports.v1",
                       partition=0, offset=1, record_time=T0)
    await login(client, "mod")
    package = await (await client.get("/console/items/post/p9/evidence.json")).json()
    assert package["account"]["ip_hash"] == "sha256:author"
    assert package["reports"][0]["ip_hash"] == "sha256:reporter"

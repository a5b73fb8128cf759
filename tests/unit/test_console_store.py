"""The console store: idempotent upserts, claims, csam exclusion, report-to-action median."""

from __future__ import annotations

from datetime import datetime, timezone

import msgspec

from streams.events import AlertData, ReportData, ReviewData, TakedownData, VerdictData
from vigil.console.store import SqliteStore, is_csam

T0 = 1_738_635_185.0  # 2025-02-04T02:13:05Z


def takedown(cid: str, action: str = "hold_for_review", label: str | None = None,
             decision: str | None = None, severity: str = "medium") -> TakedownData:
    return msgspec.convert({
        "decision_id": decision or f"d-{cid}", "action": action,
        "target": {"type": "image", "id": cid, "post_id": "p1", "thread_id": "t1",
                   "author_id": "u1"},
        "reasons": [{"detector": "sha256", "signal": "bank_match", "distance": 0,
                     "bank": "b1", "label": label}] if label else
                   [{"detector": "policy", "signal": "unchecked"}],
        "severity": severity, "decided_at": datetime.fromtimestamp(T0, timezone.utc),
    }, TakedownData)


def verdict(cid: str, verdict_: str, decision: str, reasons: list[dict] | None = None
            ) -> VerdictData:
    return msgspec.convert({"content_type": "image", "content_id": cid, "verdict": verdict_,
                            "decision_id": decision, "reasons": reasons or []}, VerdictData)


def report(rid: str, target: str, at: float) -> ReportData:
    return msgspec.convert({
        "report_id": rid, "target_type": "image", "target_id": target,
        "reporter": {"id": f"r-{rid}"}, "created_at": datetime.fromtimestamp(at, timezone.utc)},
        ReportData)


def test_takedown_upsert_is_idempotent() -> None:
    store = SqliteStore.memory()
    for _ in range(3):  # redelivered
        store.apply_takedown(takedown("img1"), T0, "evt-1")
        store.apply_verdict(verdict("img1", "hold", "d-img1"), T0, "evt-2")
    queue = store.queue(T0 + 10)
    assert [i.key for i in queue] == ["image:img1"]
    assert queue[0].decision_id == "d-img1" and queue[0].action == "hold_for_review"
    assert len(queue[0].reasons) == 1
    assert len(store.trail("image:img1")) == 2


def test_reports_counted_once_per_report_id() -> None:
    store = SqliteStore.memory()
    store.apply_report(report("r1", "img2", T0), T0, )
    store.apply_report(report("r1", "img2", T0), T0)
    store.apply_report(report("r2", "img2", T0 + 5), T0 + 5)
    item = store.item("image:img2")
    assert item is not None and item.report_count == 2 and item.first_report_at == T0


def test_queue_order_severity_then_age() -> None:
    store = SqliteStore.memory()
    store.apply_takedown(takedown("old-low", severity="low"), T0, "e1")
    store.apply_takedown(takedown("new-crit", severity="critical"), T0, "e2")
    store.apply_takedown(takedown("old-med", severity="medium"), T0, "e3")
    assert [i.content_id for i in store.queue(T0)] == ["new-crit", "old-med", "old-low"]


def test_claims_are_exclusive_until_expiry() -> None:
    store = SqliteStore.memory()
    store.apply_takedown(takedown("img3"), T0, "e1")
    assert store.claim("image:img3", "ana", T0, 60) is None
    assert store.claim("image:img3", "ana", T0 + 1, 60) is None  # renew own claim
    assert store.claim("image:img3", "bob", T0 + 2, 60) == "ana"
    assert store.claim("image:img3", "bob", T0 + 62, 60) is None  # expired
    store.release("image:img3", "ana")  # not hers any more: no effect
    assert store.item("image:img3").claimed_by == "bob"  # type: ignore[union-attr]


def test_csam_items_never_keep_a_thumbnail() -> None:
    store = SqliteStore.memory()
    store.apply_takedown(takedown("img4"), T0, "e1")
    assert store.put_thumb("image:img4", b"blurred")
    assert store.thumb("image:img4") == b"blurred"
    # the csam match arrives later (e.g. a bank update): the thumbnail is deleted, never served
    store.apply_takedown(takedown("img4", "block", label="csam", decision="d2",
                                  severity="critical"), T0, "e2")
    item = store.item("image:img4")
    assert item is not None and item.csam
    assert store.thumb("image:img4") is None
    assert not store.put_thumb("image:img4", b"blurred")
    assert is_csam([{"label": "CSAM"}]) and not is_csam([{"label": "adult"}])


def test_restore_takedown_and_reviews_close_items() -> None:
    store = SqliteStore.memory()
    store.apply_takedown(takedown("img5"), T0, "e1")
    restore = takedown("img5", "restore", decision="d-img5-restore")
    store.apply_takedown(restore, T0 + 30, "e2")
    assert store.item("image:img5").status == "restored"  # type: ignore[union-attr]
    assert store.queue(T0 + 31) == []
    store.apply_takedown(takedown("img6"), T0, "e3")
    review = ReviewData(decision_id="d-img6", outcome="confirm", reviewer="ana",
                        content_id="img6")
    store.apply_review(review, T0 + 5, "rv1")
    store.apply_review(review, T0 + 6, "rv1")  # duplicate
    assert store.item("image:img6").status == "confirmed"  # type: ignore[union-attr]
    assert len([t for t in store.trail("image:img6") if t["kind"] == "review"]) == 1


def test_alerts_upsert_by_dedup_key_and_resolve() -> None:
    store = SqliteStore.memory()
    alert = msgspec.convert({"alert_id": "a1", "kind": "thread_raid", "severity": "high",
                             "summary": "raid", "target": {"type": "thread", "id": "t1"},
                             "dedup_key": "raid:t1", "count": 3}, AlertData)
    store.apply_alert(alert)
    store.apply_alert(alert)
    assert [a.dedup_key for a in store.open_alerts()] == ["raid:t1"]
    store.apply_takedown(takedown("img7"), T0, "e1")  # thread t1
    assert [i.content_id for i in store.items_of_alert(store.alert("raid:t1"))] == ["img7"]  # type: ignore[arg-type]
    resolved = msgspec.structs.replace(alert, evidence={"resolved": True})
    store.apply_alert(resolved)
    assert store.open_alerts() == []


def test_median_report_to_action() -> None:
    store = SqliteStore.memory()
    assert store.median_report_to_action(T0) is None
    store.apply_report(report("r1", "a", T0), T0)
    store.mark_reviewed("image:a", "confirm", "ana", T0 + 60)
    store.apply_report(report("r2", "b", T0), T0)
    store.mark_reviewed("image:b", "restore", "ana", T0 + 180)
    store.apply_report(report("r3", "c", T0), T0)  # not acted on yet: not counted
    assert store.median_report_to_action(T0 + 200) == 120
    assert store.median_report_to_action(T0 + 2 * 86400) is None  # outside 24 h


def test_offsets_roundtrip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = SqliteStore(tmp_path / "c.sqlite3")
    store.set_offsets({("t", 0): 5, ("t", 1): 7})
    store.set_offsets({("t", 0): 9})
    store.close()
    assert SqliteStore(tmp_path / "c.sqlite3").offsets() == {("t", 0): 9, ("t", 1): 7}

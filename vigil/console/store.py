"""The console's state: the review queue, alerts, reports, sessions, claims and the audit log.

One SQLite database under `VIGIL_DATA_DIR` (stdlib `sqlite3`), fed by the console's consumer
(`vigil.console.feed`) and written by its views. `ConsoleStore` is the interface;
`SqliteStore(path)` is the real one and `SqliteStore.memory()` the in-memory one the unit tests
use (same SQL, so both behave the same).

Delivery is at-least-once, so every write from the feed is an idempotent upsert: items by
content (`type:id`, carrying the latest `decision_id`), alerts by `dedup_key`, reports by
`report_id`, trail entries by CloudEvent `id`. The feed's offsets are written in the same
transaction as the rows they produced, so a crash replays at most what was not stored.

What is never stored: original images. For images the store keeps a *pointer* (topic,
partition, offset) and, for held non-csam items only, a blurred thumbnail (`thumbs`). An item
whose reasons carry a `csam` label has its thumbnail deleted and can never get one
(`put_thumb` refuses).
"""

from __future__ import annotations

import json
import sqlite3
import statistics
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Protocol

SEVERITY_RANK = {"critical": 0, "high": 1, "medium": 2, "low": 3}
CSAM_LABEL = "csam"

# Columns added after the first release: (table, column, type), added to older databases.
_ADDED_COLUMNS = (("reports", "reporter_ip_hash", "TEXT"), ("content", "author_ip_hash", "TEXT"))

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    key TEXT PRIMARY KEY,            -- "image:img1" / "post:p1"
    content_type TEXT NOT NULL,
    content_id TEXT NOT NULL,
    post_id TEXT, thread_id TEXT, author_id TEXT,
    decision_id TEXT,                -- the decision a review names (latest non-review one)
    verdict TEXT, action TEXT,       -- latest verdict / takedown action
    severity TEXT NOT NULL DEFAULT 'low',
    reasons TEXT NOT NULL DEFAULT '[]',
    csam INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'open',   -- open, confirmed, restored, escalated
    first_seen REAL NOT NULL,        -- epoch s: held, blocked or first reported
    first_report_at REAL, report_count INTEGER NOT NULL DEFAULT 0,
    actioned_at REAL,                -- first action (takedown or human review)
    reviewed_by TEXT, reviewed_at REAL,
    claimed_by TEXT, claim_expires REAL
);
CREATE INDEX IF NOT EXISTS items_status ON items(status);
CREATE TABLE IF NOT EXISTS content (     -- every post/image seen: where its event is, who wrote it
    key TEXT PRIMARY KEY,
    topic TEXT NOT NULL, partition INTEGER NOT NULL, "offset" INTEGER NOT NULL,
    author_id TEXT, author_created_at TEXT, thread_id TEXT, post_id TEXT,
    seen_at REAL NOT NULL, decision_id TEXT, verdict TEXT, sha256 TEXT, author_ip_hash TEXT
);
CREATE INDEX IF NOT EXISTS content_author ON content(author_id, seen_at);
CREATE INDEX IF NOT EXISTS content_thread ON content(thread_id, seen_at);
CREATE TABLE IF NOT EXISTS reports (
    report_id TEXT PRIMARY KEY, target_key TEXT NOT NULL, reporter_id TEXT,
    reason TEXT, created_at REAL NOT NULL, reporter_ip_hash TEXT
);
CREATE INDEX IF NOT EXISTS reports_target ON reports(target_key);
CREATE TABLE IF NOT EXISTS alerts (
    dedup_key TEXT PRIMARY KEY, alert_id TEXT NOT NULL, kind TEXT NOT NULL,
    severity TEXT NOT NULL, summary TEXT NOT NULL, target_type TEXT, target_id TEXT,
    evidence TEXT NOT NULL, first_seen REAL, last_seen REAL, count INTEGER NOT NULL DEFAULT 1,
    resolved INTEGER NOT NULL DEFAULT 0, runbook_url TEXT
);
CREATE TABLE IF NOT EXISTS trail (       -- the decision trail of an item, for evidence export
    event_id TEXT PRIMARY KEY, key TEXT NOT NULL, kind TEXT NOT NULL, at REAL NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS trail_key ON trail(key, at);
CREATE TABLE IF NOT EXISTS thumbs (key TEXT PRIMARY KEY, blurred BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, user TEXT NOT NULL,
    action TEXT NOT NULL, key TEXT, detail TEXT
);
CREATE TABLE IF NOT EXISTS sessions (
    sid TEXT PRIMARY KEY, user TEXT NOT NULL, role TEXT NOT NULL, csrf TEXT NOT NULL,
    expires REAL NOT NULL, greyscale INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS unblur (
    sid TEXT NOT NULL, key TEXT NOT NULL, expires REAL NOT NULL, PRIMARY KEY (sid, key)
);
CREATE TABLE IF NOT EXISTS offsets (
    topic TEXT NOT NULL, partition INTEGER NOT NULL, "offset" INTEGER NOT NULL,
    PRIMARY KEY (topic, partition)
);
"""


def content_key(content_type: str, content_id: str) -> str:
    """The store's key of one post or image."""
    return f"{content_type}:{content_id}"


def is_csam(reasons: Sequence[dict[str, Any]]) -> bool:
    """Whether any reason is a match against a `csam`-labelled bank."""
    return any((r.get("label") or "").lower() == CSAM_LABEL for r in reasons)


def epoch(value: datetime | None, default: float | None = None) -> float:
    """A datetime as epoch seconds (`default`, else now, when None)."""
    if value is None:
        return time.time() if default is None else default
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.timestamp()


@dataclass
class Item:
    """One queue entry (a held, blocked or reported post or image)."""

    key: str
    content_type: str
    content_id: str
    post_id: str | None
    thread_id: str | None
    author_id: str | None
    decision_id: str | None
    verdict: str | None
    action: str | None
    severity: str
    reasons: list[dict[str, Any]]
    csam: bool
    status: str
    first_seen: float
    first_report_at: float | None
    report_count: int
    actioned_at: float | None
    reviewed_by: str | None
    reviewed_at: float | None
    claimed_by: str | None
    claim_expires: float | None
    alerts: list[Alert] = field(default_factory=list)

    def claimed_by_other(self, user: str, now: float) -> str | None:
        """Who else holds a live claim on this item, if anyone."""
        if self.claimed_by and self.claimed_by != user and (self.claim_expires or 0) > now:
            return self.claimed_by
        return None


@dataclass
class Alert:
    """An incident from safety.alerts.v1 (one per dedup key)."""

    dedup_key: str
    alert_id: str
    kind: str
    severity: str
    summary: str
    target_type: str | None
    target_id: str | None
    evidence: dict[str, Any]
    first_seen: float | None
    last_seen: float | None
    count: int
    resolved: bool
    runbook_url: str | None

    def content_ids(self) -> set[str]:
        """Content ids the alert names (its target and any id lists in its evidence)."""
        ids = {self.target_id} if self.target_id else set()
        for name, value in self.evidence.items():
            if name.endswith("_ids") and isinstance(value, list):
                ids.update(str(v) for v in value)
        return ids

    def account_ids(self) -> set[str]:
        """Accounts the alert names (an account target, `*account_ids` lists in evidence)."""
        ids = {self.target_id} if self.target_type == "account" and self.target_id else set()
        for name, value in self.evidence.items():
            if name.endswith("account_ids") and isinstance(value, list):
                ids.update(str(v) for v in value)
        return ids


@dataclass(frozen=True)
class Content:
    """A post or image of an incident, with the verdict decision a review must name."""

    key: str
    content_type: str
    content_id: str
    decision_id: str
    verdict: str | None


@dataclass
class Session:
    """A logged-in console session."""

    sid: str
    user: str
    role: str
    csrf: str
    expires: float
    greyscale: bool


class ConsoleStore(Protocol):
    """What the console's feed and views need from storage."""

    def apply_verdict(self, data: Any, at: float, event_id: str) -> None: ...
    def apply_takedown(self, data: Any, at: float, event_id: str) -> None: ...
    def apply_alert(self, data: Any) -> None: ...
    def apply_report(self, data: Any, at: float, ip_hash: str | None = None) -> None: ...
    def apply_review(self, data: Any, at: float, event_id: str) -> None: ...
    def record_content(self, key: str, topic: str, partition: int, offset: int,
                       data: Any, at: float, ip_hash: str | None = None) -> None: ...
    def set_offsets(self, offsets: dict[tuple[str, int], int]) -> None: ...
    def offsets(self) -> dict[tuple[str, int], int]: ...
    def queue(self, now: float, limit: int = 200) -> list[Item]: ...
    def item(self, key: str) -> Item | None: ...
    def claim(self, key: str, user: str, now: float, ttl: float) -> str | None: ...
    def release(self, key: str, user: str) -> None: ...
    def mark_reviewed(self, key: str, outcome: str, user: str, now: float) -> None: ...
    def open_alerts(self) -> list[Alert]: ...
    def alert(self, dedup_key: str) -> Alert | None: ...
    def items_of_alert(self, alert: Alert) -> list[Item]: ...
    def content_of_alert(self, alert: Alert, now: float | None = None,
                         user: str | None = None) -> list[Content]: ...
    def image_items(self) -> list[Item]: ...
    def pointer(self, key: str) -> dict[str, Any] | None: ...
    def author_activity(self, author_id: str, now: float, hours: float = 24) -> int: ...
    def reports_of(self, key: str) -> list[dict[str, Any]]: ...
    def trail(self, key: str) -> list[dict[str, Any]]: ...
    def put_thumb(self, key: str, blurred: bytes) -> bool: ...
    def thumb(self, key: str) -> bytes | None: ...
    def audit(self, user: str, action: str, key: str | None, detail: str, now: float) -> None: ...
    def audit_log(self, limit: int = 200) -> list[dict[str, Any]]: ...
    def median_report_to_action(self, now: float, hours: float = 24) -> float | None: ...
    def create_session(self, session: Session) -> None: ...
    def session(self, sid: str, now: float) -> Session | None: ...
    def delete_session(self, sid: str) -> None: ...
    def set_greyscale(self, sid: str, on: bool) -> None: ...
    def grant_unblur(self, sid: str, key: str, expires: float) -> None: ...
    def unblur_granted(self, sid: str, key: str, now: float) -> bool: ...


class SqliteStore:
    """`ConsoleStore` on SQLite: a file under the data dir, or `:memory:` for tests.

    One connection guarded by a lock: every call is a few milliseconds of indexed SQL, which
    the event loop can afford and which keeps writes serialised without a thread pool.
    """

    def __init__(self, path: Path | str) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        if str(path) != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
            Path(path).chmod(0o600)
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        for table, column, kind in _ADDED_COLUMNS:
            known = {r["name"] for r in self._db.execute(f"PRAGMA table_info({table})")}
            if column not in known:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")

    @classmethod
    def memory(cls) -> SqliteStore:
        """An in-memory store (unit tests)."""
        return cls(":memory:")

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic batch (the feed wraps each consumed batch and its offsets in one)."""
        with self._lock:
            if self._db.in_transaction:  # nested: the outer transaction commits
                yield self._db
                return
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return list(self._db.execute(sql, args))

    # ------------------------------------------------------------------ feed (idempotent)

    def _upsert_item(self, db: sqlite3.Connection, key: str, target: dict[str, Any],
                     at: float) -> None:
        db.execute(
            "INSERT INTO items (key, content_type, content_id, post_id, thread_id, author_id,"
            " first_seen) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET"
            " post_id = COALESCE(excluded.post_id, post_id),"
            " thread_id = COALESCE(excluded.thread_id, thread_id),"
            " author_id = COALESCE(excluded.author_id, author_id),"
            " first_seen = MIN(first_seen, excluded.first_seen)",
            (key, target["type"], target["id"], target.get("post_id"), target.get("thread_id"),
             target.get("author_id"), at))

    def _set_reasons(self, db: sqlite3.Connection, key: str,
                     reasons: list[dict[str, Any]]) -> None:
        row = db.execute("SELECT reasons, csam FROM items WHERE key = ?", (key,)).fetchone()
        merged: list[dict[str, Any]] = json.loads(row["reasons"]) if row else []
        for reason in reasons:
            if reason.get("detector") != "review" and reason not in merged:
                merged.append(reason)
        csam = bool(row and row["csam"]) or is_csam(merged)
        db.execute("UPDATE items SET reasons = ?, csam = ? WHERE key = ?",
                   (json.dumps(merged), int(csam), key))
        if csam:  # a thumbnail made before the csam match arrived must not survive it
            db.execute("DELETE FROM thumbs WHERE key = ?", (key,))

    def _trail(self, db: sqlite3.Connection, event_id: str, key: str, kind: str, at: float,
               detail: dict[str, Any]) -> bool:
        cursor = db.execute(
            "INSERT OR IGNORE INTO trail (event_id, key, kind, at, detail) VALUES (?, ?, ?, ?, ?)",
            (event_id, key, kind, at, json.dumps(detail, default=str)))
        return cursor.rowcount == 1

    def apply_verdict(self, data: Any, at: float, event_id: str) -> None:
        """A verdict: `hold`/`block` opens (or updates) a queue item; any verdict is recorded
        on the content so a later report knows the decision id it can be reviewed under."""
        key = content_key(data.content_type, data.content_id)
        reasons = [_builtins(r) for r in data.reasons]
        restore = any(r.get("detector") == "review" for r in reasons)
        with self.transaction() as db:
            self._trail(db, event_id, key, "verdict", at,
                        {"verdict": data.verdict, "decision_id": data.decision_id,
                         "reasons": reasons, "policy_version": data.policy_version})
            db.execute("UPDATE content SET decision_id = ?, verdict = ? WHERE key = ?",
                       (data.decision_id, data.verdict, key))
            exists = db.execute("SELECT 1 FROM items WHERE key = ?", (key,)).fetchone()
            if data.verdict == "allow" and not exists:
                return
            target = {"type": data.content_type, "id": data.content_id,
                      "post_id": data.post_id, "thread_id": data.thread_id}
            self._upsert_item(db, key, target, at)
            if restore:  # decide's answer to a `restore` review: the item is done
                db.execute("UPDATE items SET verdict = 'allow', status = 'restored',"
                           " actioned_at = COALESCE(actioned_at, ?) WHERE key = ?", (at, key))
                return
            db.execute("UPDATE items SET verdict = ?, decision_id = ? WHERE key = ?",
                       (data.verdict, data.decision_id, key))
            self._set_reasons(db, key, reasons)

    def apply_takedown(self, data: Any, at: float, event_id: str) -> None:
        """A takedown: opens/updates the item; a `restore` takedown closes it."""
        target = _builtins(data.target)
        key = content_key(target["type"], target["id"])
        reasons = [_builtins(r) for r in data.reasons]
        decided = epoch(data.decided_at, at)
        with self.transaction() as db:
            self._trail(db, event_id, key, "takedown", decided,
                        {"action": data.action, "decision_id": data.decision_id,
                         "severity": data.severity, "reasons": reasons,
                         "policy_version": data.policy_version})
            self._upsert_item(db, key, target, decided)
            if data.action == "restore":
                db.execute("UPDATE items SET action = 'restore', status = 'restored',"
                           " actioned_at = COALESCE(actioned_at, ?) WHERE key = ?",
                           (decided, key))
                return
            db.execute(
                "UPDATE items SET action = ?, decision_id = ?, severity = ?,"
                " actioned_at = COALESCE(actioned_at, ?) WHERE key = ?",
                (data.action, data.decision_id, data.severity, decided, key))
            self._set_reasons(db, key, reasons)

    def apply_alert(self, data: Any) -> None:
        """An alert, upserted by dedup key; `evidence.resolved` closes it."""
        evidence = dict(data.evidence or {})
        target = _builtins(data.target) if data.target is not None else {}
        dedup = data.dedup_key or data.alert_id
        with self.transaction() as db:
            db.execute(
                "INSERT INTO alerts (dedup_key, alert_id, kind, severity, summary, target_type,"
                " target_id, evidence, first_seen, last_seen, count, resolved, runbook_url)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(dedup_key) DO UPDATE SET alert_id = excluded.alert_id,"
                " severity = excluded.severity, summary = excluded.summary,"
                " evidence = excluded.evidence, last_seen = MAX(COALESCE(last_seen, 0),"
                " COALESCE(excluded.last_seen, 0)), count = MAX(count, excluded.count),"
                " resolved = MAX(resolved, excluded.resolved)",
                (dedup, data.alert_id, data.kind, data.severity, data.summary,
                 target.get("type"), target.get("id"), json.dumps(evidence, default=str),
                 epoch(data.first_seen) if data.first_seen else None,
                 epoch(data.last_seen) if data.last_seen else None, data.count,
                 int(bool(evidence.get("resolved"))), data.runbook_url))

    def apply_report(self, data: Any, at: float, ip_hash: str | None = None) -> None:
        """A member report: counted once per `report_id`; reported posts/images join the queue.
        `ip_hash` is the forum's optional `reporter.ip_hash` (kept for evidence export)."""
        if data.target_type not in ("post", "image"):
            return  # account reports: counted by burst detection, no queue item of their own
        key = content_key(data.target_type, data.target_id)
        created = epoch(data.created_at, at)
        with self.transaction() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO reports (report_id, target_key, reporter_id, reason,"
                " created_at, reporter_ip_hash) VALUES (?, ?, ?, ?, ?, ?)",
                (data.report_id, key, data.reporter.id, data.reason, created, ip_hash))
            if cursor.rowcount != 1:
                return
            known = db.execute("SELECT * FROM content WHERE key = ?", (key,)).fetchone()
            self._upsert_item(db, key, {
                "type": data.target_type, "id": data.target_id,
                "thread_id": data.thread_id or (known["thread_id"] if known else None),
                "post_id": known["post_id"] if known else None,
                "author_id": known["author_id"] if known else None}, created)
            db.execute(
                "UPDATE items SET report_count = report_count + 1,"
                " first_report_at = MIN(COALESCE(first_report_at, ?), ?),"
                " decision_id = COALESCE(decision_id, ?), verdict = COALESCE(verdict, ?)"
                " WHERE key = ?",
                (created, created, known["decision_id"] if known else None,
                 known["verdict"] if known else None, key))

    def apply_review(self, data: Any, at: float, event_id: str) -> None:
        """A review on the topic (ours or another console's/the forum's): trail + status.

        A review of content that never was in the queue (a bulk hide of *allowed* posts)
        opens its item already reviewed, so decide's answering takedown does not queue it."""
        if not data.content_id:
            return
        with self.transaction() as db:
            row = db.execute("SELECT key FROM items WHERE content_id = ? AND decision_id = ?",
                             (data.content_id, data.decision_id)).fetchone()
            if row is None:
                row = db.execute(
                    "SELECT * FROM content WHERE key IN (?, ?) AND decision_id = ?",
                    (content_key("post", data.content_id),
                     content_key("image", data.content_id), data.decision_id)).fetchone()
                if row is None:
                    return
                self._upsert_item(db, row["key"], {
                    "type": row["key"].split(":", 1)[0], "id": data.content_id,
                    "post_id": row["post_id"], "thread_id": row["thread_id"],
                    "author_id": row["author_id"]}, at)
                db.execute("UPDATE items SET decision_id = ?, verdict = ? WHERE key = ?",
                           (row["decision_id"], row["verdict"], row["key"]))
            if self._trail(db, event_id, row["key"], "review", at,
                           {"outcome": data.outcome, "reviewer": data.reviewer,
                            "note": data.note, "decision_id": data.decision_id}):
                self._mark(db, row["key"], data.outcome, data.reviewer or "?", at)

    def record_content(self, key: str, topic: str, partition: int, offset: int,
                       data: Any, at: float, ip_hash: str | None = None) -> None:
        """Where a post's/image's event is (never its bytes), who wrote it (with the forum's
        optional `author.ip_hash`), and its verdict's decision when the verdict came first."""
        author = data.author
        with self.transaction() as db:
            db.execute(
                "INSERT INTO content (key, topic, partition, \"offset\", author_id,"
                " author_created_at, thread_id, post_id, seen_at, sha256, author_ip_hash)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET"
                " topic = excluded.topic, partition = excluded.partition,"
                " \"offset\" = excluded.\"offset\", author_id = excluded.author_id,"
                " author_created_at = excluded.author_created_at,"
                " author_ip_hash = excluded.author_ip_hash",
                (key, topic, partition, offset, author.id,
                 author.created_at.isoformat() if author.created_at else None,
                 getattr(data, "thread_id", None), getattr(data, "post_id", None), at,
                 getattr(data, "sha256", None), ip_hash))
            # the feed reads topics in parallel: the verdict may have been applied first
            latest = db.execute(
                "SELECT detail FROM trail WHERE key = ? AND kind = 'verdict'"
                " ORDER BY at DESC LIMIT 1", (key,)).fetchone()
            if latest is not None:
                verdict = json.loads(latest["detail"])
                db.execute("UPDATE content SET decision_id = ?, verdict = ? WHERE key = ?"
                           " AND decision_id IS NULL",
                           (verdict["decision_id"], verdict["verdict"], key))

    def set_offsets(self, offsets: dict[tuple[str, int], int]) -> None:
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO offsets (topic, partition, \"offset\") VALUES (?, ?, ?)"
                " ON CONFLICT(topic, partition) DO UPDATE SET \"offset\" = excluded.\"offset\"",
                [(t, p, o) for (t, p), o in offsets.items()])

    def offsets(self) -> dict[tuple[str, int], int]:
        return {(r["topic"], r["partition"]): r["offset"]
                for r in self._rows("SELECT * FROM offsets")}

    # ------------------------------------------------------------------ queue and claims

    def queue(self, now: float, limit: int = 200) -> list[Item]:
        """Open items, most severe first, then oldest first (the SLA order)."""
        rows = self._rows(
            "SELECT * FROM items WHERE status = 'open' AND (action IS NOT NULL"
            " OR verdict IN ('hold', 'block') OR report_count > 0)"
            " ORDER BY CASE severity WHEN 'critical' THEN 0 WHEN 'high' THEN 1"
            " WHEN 'medium' THEN 2 ELSE 3 END, first_seen LIMIT ?", (limit,))
        items = [_item(r) for r in rows]
        alerts = self.open_alerts()
        for item in items:
            item.alerts = [a for a in alerts if item.content_id in a.content_ids()
                           or (a.target_type == "thread" and a.target_id == item.thread_id)]
        return items

    def item(self, key: str) -> Item | None:
        rows = self._rows("SELECT * FROM items WHERE key = ?", (key,))
        if not rows:
            return None
        item = _item(rows[0])
        item.alerts = [a for a in self.open_alerts() if item.content_id in a.content_ids()
                       or (a.target_type == "thread" and a.target_id == item.thread_id)]
        return item

    def claim(self, key: str, user: str, now: float, ttl: float) -> str | None:
        """Claim `key` for `user` until now+ttl. Returns None on success, else the holder."""
        with self.transaction() as db:
            cursor = db.execute(
                "UPDATE items SET claimed_by = ?, claim_expires = ? WHERE key = ? AND"
                " (claimed_by IS NULL OR claimed_by = ? OR claim_expires <= ?)",
                (user, now + ttl, key, user, now))
            if cursor.rowcount == 1:
                return None
            row = db.execute("SELECT claimed_by FROM items WHERE key = ?", (key,)).fetchone()
            return row["claimed_by"] if row else "(no such item)"

    def release(self, key: str, user: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE items SET claimed_by = NULL, claim_expires = NULL"
                       " WHERE key = ? AND claimed_by = ?", (key, user))

    def _mark(self, db: sqlite3.Connection, key: str, outcome: str, user: str,
              now: float) -> None:
        status = {"confirm": "confirmed", "restore": "restored",
                  "escalate": "escalated"}[outcome]
        # escalated items stay in the queue (someone more senior must still decide)
        db.execute(
            "UPDATE items SET status = CASE WHEN ? = 'escalated' THEN status ELSE ? END,"
            " reviewed_by = ?, reviewed_at = ?, actioned_at = COALESCE(actioned_at, ?),"
            " claimed_by = NULL, claim_expires = NULL WHERE key = ?",
            (status, status, user, now, now, key))

    def mark_reviewed(self, key: str, outcome: str, user: str, now: float) -> None:
        """Record a console review locally (the topic echo is idempotent)."""
        with self.transaction() as db:
            self._mark(db, key, outcome, user, now)

    # ------------------------------------------------------------------ alerts, context

    def open_alerts(self) -> list[Alert]:
        rows = self._rows(
            "SELECT * FROM alerts WHERE resolved = 0 ORDER BY CASE severity WHEN 'critical'"
            " THEN 0 WHEN 'high' THEN 1 WHEN 'medium' THEN 2 ELSE 3 END, last_seen DESC")
        return [_alert(r) for r in rows]

    def alert(self, dedup_key: str) -> Alert | None:
        rows = self._rows("SELECT * FROM alerts WHERE dedup_key = ?", (dedup_key,))
        return _alert(rows[0]) if rows else None

    def items_of_alert(self, alert: Alert) -> list[Item]:
        """Open items an alert names (by id, or all of a raided thread)."""
        ids = sorted(alert.content_ids())
        thread = alert.target_id if alert.target_type == "thread" else None
        rows = self._rows(
            "SELECT * FROM items WHERE status = 'open' AND (content_id IN"
            " (SELECT value FROM json_each(?)) OR (? IS NOT NULL AND thread_id = ?))",
            (json.dumps(ids), thread, thread))
        return [_item(r) for r in rows]

    def content_of_alert(self, alert: Alert, now: float | None = None,
                         user: str | None = None) -> list[Content]:
        """Every post and image of an incident that has a verdict and is not already
        confirmed or restored: in the alert's thread or by the accounts it names, seen from
        its `first_seen` to its `last_seen` (no end while it is open), plus the content it
        names by id. Allowed content included: a raid is mostly posts that each looked fine.
        With `user`, content someone else has a live claim on is left out.

        Three indexed lookups (ids, thread, accounts) in a UNION: the content table holds
        every post, and the live page asks this for every open incident."""
        thread = alert.target_id if alert.target_type == "thread" else None
        start = alert.first_seen if alert.first_seen is not None else -1.0
        end = alert.last_seen if alert.resolved and alert.last_seen is not None else 1e18
        ids = sorted(alert.content_ids())
        keys = [content_key(t, i) for i in ids for t in ("post", "image")]
        rows = self._rows(
            "SELECT c.key, c.decision_id, c.verdict FROM content c"
            " LEFT JOIN items i ON i.key = c.key WHERE c.key IN ("
            "  SELECT key FROM content WHERE key IN (SELECT value FROM json_each(?))"
            "  UNION SELECT key FROM content WHERE thread_id = ? AND seen_at BETWEEN ? AND ?"
            "  UNION SELECT key FROM content WHERE author_id IN (SELECT value FROM json_each(?))"
            "   AND seen_at BETWEEN ? AND ?)"
            " AND c.decision_id IS NOT NULL"
            " AND COALESCE(i.status, 'open') NOT IN ('confirmed', 'restored')"
            " AND (? IS NULL OR i.claimed_by IS NULL OR i.claimed_by = ?"
            "  OR i.claim_expires <= ?)"
            " ORDER BY c.seen_at",
            (json.dumps(keys), thread, start, end, json.dumps(sorted(alert.account_ids())),
             start, end, user, user, now or 0.0))
        return [Content(r["key"], *r["key"].split(":", 1), r["decision_id"], r["verdict"])
                for r in rows]

    def image_items(self) -> list[Item]:
        """Every image item (open or closed): the evidence vault's candidates."""
        return [_item(r) for r in self._rows("SELECT * FROM items WHERE content_type = 'image'")]

    def pointer(self, key: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM content WHERE key = ?", (key,))
        return dict(rows[0]) if rows else None

    def author_activity(self, author_id: str, now: float, hours: float = 24) -> int:
        rows = self._rows("SELECT COUNT(*) AS n FROM content WHERE author_id = ? AND"
                          " seen_at >= ?", (author_id, now - hours * 3600))
        return int(rows[0]["n"])

    def reports_of(self, key: str) -> list[dict[str, Any]]:
        return [dict(r) for r in self._rows(
            "SELECT * FROM reports WHERE target_key = ? ORDER BY created_at", (key,))]

    def trail(self, key: str) -> list[dict[str, Any]]:
        return [{**dict(r), "detail": json.loads(r["detail"])} for r in self._rows(
            "SELECT * FROM trail WHERE key = ? ORDER BY at", (key,))]

    # ------------------------------------------------------------------ thumbnails

    def put_thumb(self, key: str, blurred: bytes) -> bool:
        """Keep a blurred thumbnail; refused (False) for csam items or unknown items."""
        with self.transaction() as db:
            row = db.execute("SELECT csam FROM items WHERE key = ?", (key,)).fetchone()
            if row is None or row["csam"]:
                return False
            db.execute("INSERT OR REPLACE INTO thumbs (key, blurred) VALUES (?, ?)",
                       (key, blurred))
            return True

    def thumb(self, key: str) -> bytes | None:
        rows = self._rows("SELECT t.blurred FROM thumbs t JOIN items i ON i.key = t.key"
                          " WHERE t.key = ? AND i.csam = 0", (key,))
        return bytes(rows[0]["blurred"]) if rows else None

    # ------------------------------------------------------------------ audit, status

    def audit(self, user: str, action: str, key: str | None, detail: str, now: float) -> None:
        with self.transaction() as db:
            db.execute("INSERT INTO audit (at, user, action, key, detail) VALUES (?, ?, ?, ?, ?)",
                       (now, user, action, key, detail))

    def audit_log(self, limit: int = 200) -> list[dict[str, Any]]:
        return [dict(r) for r in self._rows(
            "SELECT * FROM audit ORDER BY id DESC LIMIT ?", (limit,))]

    def median_report_to_action(self, now: float, hours: float = 24) -> float | None:
        """Median seconds from an item's first report to its first action (automated or
        human), over items first reported in the last `hours`; None when there are none."""
        rows = self._rows(
            "SELECT first_report_at, actioned_at FROM items WHERE first_report_at >= ?"
            " AND actioned_at IS NOT NULL", (now - hours * 3600,))
        waits = [max(0.0, r["actioned_at"] - r["first_report_at"]) for r in rows]
        return statistics.median(waits) if waits else None

    # ------------------------------------------------------------------ sessions

    def create_session(self, session: Session) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM sessions WHERE expires <= ?", (time.time(),))
            db.execute("INSERT INTO sessions (sid, user, role, csrf, expires, greyscale)"
                       " VALUES (?, ?, ?, ?, ?, ?)",
                       (session.sid, session.user, session.role, session.csrf,
                        session.expires, int(session.greyscale)))

    def session(self, sid: str, now: float) -> Session | None:
        rows = self._rows("SELECT * FROM sessions WHERE sid = ? AND expires > ?", (sid, now))
        if not rows:
            return None
        r = rows[0]
        return Session(r["sid"], r["user"], r["role"], r["csrf"], r["expires"],
                       bool(r["greyscale"]))

    def delete_session(self, sid: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM sessions WHERE sid = ?", (sid,))
            db.execute("DELETE FROM unblur WHERE sid = ?", (sid,))

    def set_greyscale(self, sid: str, on: bool) -> None:
        with self.transaction() as db:
            db.execute("UPDATE sessions SET greyscale = ? WHERE sid = ?", (int(on), sid))

    def grant_unblur(self, sid: str, key: str, expires: float) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO unblur (sid, key, expires) VALUES (?, ?, ?)",
                       (sid, key, expires))

    def unblur_granted(self, sid: str, key: str, now: float) -> bool:
        return bool(self._rows("SELECT 1 FROM unblur WHERE sid = ? AND key = ? AND expires > ?",
                               (sid, key, now)))


def _builtins(value: Any) -> dict[str, Any]:
    import msgspec

    result: dict[str, Any] = msgspec.to_builtins(value) if not isinstance(value, dict) else value
    return result


def _item(r: sqlite3.Row) -> Item:
    return Item(
        key=r["key"], content_type=r["content_type"], content_id=r["content_id"],
        post_id=r["post_id"], thread_id=r["thread_id"], author_id=r["author_id"],
        decision_id=r["decision_id"], verdict=r["verdict"], action=r["action"],
        severity=r["severity"], reasons=json.loads(r["reasons"]), csam=bool(r["csam"]),
        status=r["status"], first_seen=r["first_seen"], first_report_at=r["first_report_at"],
        report_count=r["report_count"], actioned_at=r["actioned_at"],
        reviewed_by=r["reviewed_by"], reviewed_at=r["reviewed_at"], claimed_by=r["claimed_by"],
        claim_expires=r["claim_expires"])


def _alert(r: sqlite3.Row) -> Alert:
    return Alert(
        dedup_key=r["dedup_key"], alert_id=r["alert_id"], kind=r["kind"],
        severity=r["severity"], summary=r["summary"], target_type=r["target_type"],
        target_id=r["target_id"], evidence=json.loads(r["evidence"]),
        first_seen=r["first_seen"], last_seen=r["last_seen"], count=r["count"],
        resolved=bool(r["resolved"]), runbook_url=r["runbook_url"])


def iso(value: float | None) -> str | None:
    """Epoch seconds → RFC 3339 UTC (for JSON and templates)."""
    if value is None:
        return None
    return datetime.fromtimestamp(value, timezone.utc).isoformat(timespec="seconds")


def age(seconds: float) -> str:
    """A short human age: `45 s`, `12 min`, `3 h 5 min`, `2 d`."""
    if seconds < 60:
        return f"{int(seconds)} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min"
    if seconds < 86400:
        delta = timedelta(seconds=int(seconds))
        hours, minutes = divmod(delta.seconds // 60, 60)
        return f"{hours} h {minutes} min"
    return f"{int(seconds // 86400)} d"

"""Typed models of the wire contract (DESIGN §2–4): the CloudEvents envelope and every `data`.

Why msgspec and not pydantic v2: every event on every topic passes through these models, so
decoding is the hot path. msgspec decodes *and* validates JSON in one pass straight into these
structs (≈10× pydantic v2 in our measurements), reports the failing field as a JSON path
(``Object missing required field `post_id` - at `$.data.author```), generates JSON Schema, and
decodes base64 `bytes` fields natively (`data_b64`). Settings, read once at start-up, use
pydantic-settings instead (env + TOML sources), where speed does not matter.

Rules that hold for every model here:
- field names are the contract: never rename one; add optional fields only;
- unknown extra fields are accepted and ignored (forums may send more than we read);
- input models (what forums send) are lenient: optional fields may be absent;
- output models (what Vigil emits) always carry every field, `null` when unknown, so a
  consumer never has to know a default to read an event.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

import msgspec

SPECVERSION = "1.0"

#: RFC 3339 needs an offset: a naive time would be ambiguous and break event-time windows.
Timestamp = Annotated[datetime, msgspec.Meta(tz=True)]
CONTENT_TYPE = "application/cloudevents+json"


class Data(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Base of every `data` payload (kept small: it only fixes the struct options)."""


class Output(Data, omit_defaults=False):
    """Base of the payloads Vigil emits: every field is written, defaults included."""


D = TypeVar("D", bound=Data)


class CloudEvent(msgspec.Struct, Generic[D], kw_only=True, omit_defaults=True):
    """CloudEvents 1.0 in structured JSON mode; `data` is typed per topic.

    `id` is unique per `source` and is the dedup key. `time` is the event time on the forum: every
    window and staffed-hours rule uses it, so a replay gives the same results. It is optional in
    CloudEvents; when a forum omits it Vigil uses the Kafka record timestamp instead.
    `sigkeyid`/`signature` are CloudEvents extension attributes set on signed output events.
    """

    specversion: Literal["1.0"]
    id: str
    source: str
    type: str
    data: D
    time: Timestamp | None = None
    datacontenttype: str | None = None
    subject: str | None = None
    sigkeyid: str | None = None
    signature: str | None = None


# ---------------------------------------------------------------- input payloads (DESIGN §3)


class Account(Data):
    """An author or reporter. `created_at` (account creation) drives every "young account" rule."""

    id: str
    created_at: Timestamp | None = None
    is_staff: bool = False


class PostData(Data):
    """`forum.post.created` / `forum.post.edited` on `forum.posts.v1`."""

    post_id: str
    thread_id: str
    author: Account
    body: str
    board: str | None = None
    image_ids: list[str] = []
    created_at: Timestamp | None = None


class ImageData(Data):
    """`forum.image.uploaded` on `forum.images.v1`.

    Exactly one of `data_b64` (inline bytes, base64 on the wire) or `url` (claim check, fetched
    only from allow-listed hosts) must be present; `validate()` checks that, since JSON Schema's
    oneOf is not expressible as a struct. `sha256`, when given, is checked against the bytes.
    """

    image_id: str
    author: Account
    post_id: str | None = None
    thread_id: str | None = None
    content_type: str | None = None
    data_b64: bytes | None = None
    url: str | None = None
    sha256: str | None = None
    #: Board/forum section of the image's thread: lets a board-wide mitigation
    #: (`hold_new_accounts_media`) see images whose post decide has not seen.
    board: str | None = None

    def validate(self) -> None:
        """Cross-field rule of the contract; raises `msgspec.ValidationError` with the reason."""
        if (self.data_b64 is None) == (self.url is None):
            raise msgspec.ValidationError(
                "exactly one of `data_b64` or `url` is required - at `$.data`"
            )


class ReportData(Data):
    """`forum.report.created` on `forum.reports.v1`."""

    report_id: str
    target_type: Literal["post", "image", "account"]
    target_id: str
    reporter: Account
    thread_id: str | None = None
    reason: str | None = None
    created_at: Timestamp | None = None


class ReviewData(Data):
    """`safety.review` on `safety.reviews.v1`: a moderator's decision on a takedown."""

    decision_id: str
    outcome: Literal["confirm", "restore", "escalate"]
    reviewer: str | None = None
    note: str | None = None
    content_id: str | None = None


# ---------------------------------------------------------------- output payloads (DESIGN §4)

ContentType = Literal["post", "image"]
Verdict = Literal["allow", "hold", "block"]
Severity = Literal["critical", "high", "medium", "low"]
Action = Literal["hide", "hold_for_review", "block", "restore"]
SignalStatus = Literal["match", "clear", "unchecked"]


class SignalData(Output):
    """`safety.signal` on `safety.signals.v1`: a detector's *fact* about one piece of content.

    Signals are not decisions; `decide` turns them into actions under the policy. Every detector
    emits exactly one signal per (content, detector) it was asked about, including "nothing
    found", so `decide` knows the detector ran. `status` (a Vigil addition to DESIGN §4, see
    docs/contract.md) says which case it is: `match` (hash match / score over threshold),
    `clear` (checked, nothing found) or `unchecked` (could not be checked: fail closed, `decide`
    holds). Exact hash matches carry `distance` 0; classifiers carry `score` in 0–1.
    `detector == "intake"` is the bookkeeping signal that opens a content's decision window.
    """

    detector: str
    detector_version: str
    content_type: ContentType
    content_id: str
    status: SignalStatus = "clear"
    post_id: str | None = None
    thread_id: str | None = None
    author_id: str | None = None
    score: float | None = None
    distance: int | None = None
    threshold: float | None = None
    model: str | None = None
    evidence: dict[str, Any] = {}


class Target(Output):
    """What a takedown acts on."""

    type: Literal["post", "image", "account", "thread", "board"]
    id: str
    post_id: str | None = None
    thread_id: str | None = None
    author_id: str | None = None


class Reason(Output):
    """Why a decision was taken: which detector said what. Never carries a hash value."""

    detector: str
    signal: str
    score: float | None = None
    distance: int | None = None
    bank: str | None = None
    label: str | None = None


class VerdictData(Output):
    """`safety.verdict` on `safety.verdicts.v1`: one per image and post, signed."""

    content_type: ContentType
    content_id: str
    verdict: Verdict
    decision_id: str
    post_id: str | None = None
    thread_id: str | None = None
    reasons: list[Reason] = []
    policy_version: str | None = None
    latency_ms: float | None = None


class TakedownData(Output):
    """`safety.takedown` on `safety.takedowns.v1`: a non-allow action, signed."""

    decision_id: str
    action: Action
    target: Target
    reasons: list[Reason]
    severity: Severity = "medium"
    policy_version: str | None = None
    decided_at: Timestamp | None = None


class AlertData(Output):
    """`safety.alert` on `safety.alerts.v1`, keyed by `dedup_key` (one alert per incident)."""

    alert_id: str
    kind: str
    severity: Severity
    summary: str
    target: Target | None = None
    evidence: dict[str, Any] = {}
    first_seen: Timestamp | None = None
    last_seen: Timestamp | None = None
    count: int = 1
    dedup_key: str | None = None
    runbook_url: str | None = None


class DeadLetterData(Output):
    """`safety.deadletter` on `safety.deadletter.v1`: an input Vigil could not read.

    `original` is the message value exactly as received (base64 on the wire), so nothing is lost
    and the event can be fixed and replayed.
    """

    topic: str
    partition: int
    offset: int
    reason: str
    original: bytes
    key: bytes | None = None


PAYLOADS: tuple[type[Data], ...] = (
    PostData,
    ImageData,
    ReportData,
    ReviewData,
    SignalData,
    VerdictData,
    TakedownData,
    AlertData,
    DeadLetterData,
)

"""Wire-level builders shared by the unit tests: valid events of every topic, as dicts and bytes.

Inputs are built as plain JSON (what a forum sends, in any language); outputs as typed models
(what Vigil builds). Each builder takes overrides so a test changes only what it is about.
"""

from __future__ import annotations

import copy
import io
import json
from datetime import datetime, timezone
from typing import Any

from streams.events import (
    Account,
    AlertData,
    Data,
    DeadLetterData,
    ImageData,
    PostData,
    Reason,
    ReportData,
    ReviewData,
    SignalData,
    TakedownData,
    Target,
    VerdictData,
)
from streams.topics import (
    ALERTS,
    DEADLETTER,
    IMAGES,
    POSTS,
    REPORTS,
    REVIEWS,
    SIGNALS,
    TAKEDOWNS,
    VERDICTS,
    TopicSpec,
)

T0 = datetime(2025, 2, 4, 2, 13, 5, tzinfo=timezone.utc)
PNG_B64 = "iVBORw0KGgo="  # 8 bytes of PNG signature: enough for the codec, not an image

ACCOUNT = {"id": "u-1", "created_at": "2024-11-01T10:00:00Z", "is_staff": False}


def envelope(type_: str, data: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A CloudEvents 1.0 structured-mode event around `data`."""
    event = {
        "specversion": "1.0",
        "id": "evt-1",
        "source": "forum/example",
        "type": type_,
        "time": "2025-02-04T02:13:05Z",
        "datacontenttype": "application/json",
        "data": data,
    }
    event.update(extra)
    return event


def post_event(**data: Any) -> dict[str, Any]:
    body = {
        "post_id": "p-1",
        "thread_id": "t-1",
        "board": "general",
        "author": dict(ACCOUNT),
        "body": "hello forum",
        "image_ids": ["i-1"],
        "created_at": "2025-02-04T02:13:05Z",
    }
    body.update(data)
    return envelope("forum.post.created", body)


def image_event(**data: Any) -> dict[str, Any]:
    body = {
        "image_id": "i-1",
        "post_id": "p-1",
        "thread_id": "t-1",
        "author": dict(ACCOUNT),
        "content_type": "image/png",
        "data_b64": PNG_B64,
    }
    body.update(data)
    return envelope("forum.image.uploaded", body)


def report_event(**data: Any) -> dict[str, Any]:
    body = {
        "report_id": "r-1",
        "target_type": "post",
        "target_id": "p-1",
        "thread_id": "t-1",
        "reporter": {"id": "u-2"},
        "reason": "spam",
        "created_at": "2025-02-04T02:14:00Z",
    }
    body.update(data)
    return envelope("forum.report.created", body)


def review_event(**data: Any) -> dict[str, Any]:
    body = {"decision_id": "dec-1", "outcome": "confirm", "reviewer": "mod-1", "note": "ok"}
    body.update(data)
    return envelope("safety.review", body)


#: A valid wire event (as JSON types) for every input topic.
INPUT_EVENTS: dict[str, Any] = {
    POSTS.name: post_event,
    IMAGES.name: image_event,
    REPORTS.name: report_event,
    REVIEWS.name: review_event,
}


def wire(event: dict[str, Any]) -> bytes:
    """The Kafka message value a forum would produce."""
    return json.dumps(event).encode()


def without(event: dict[str, Any], *path: str) -> dict[str, Any]:
    """A deep copy of `event` with the field at `path` (e.g. "data", "author", "id") removed."""
    result = copy.deepcopy(event)
    node = result
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return result


def signal(
    detector: str,
    status: str = "clear",
    *,
    content_id: str = "i-1",
    content_type: str = "image",
    **fields: Any,
) -> SignalData:
    """A signal as a detector would emit it."""
    return SignalData(
        detector=detector,
        detector_version=f"{detector}-1",
        content_type=content_type,  # type: ignore[arg-type]
        content_id=content_id,
        status=status,  # type: ignore[arg-type]
        **fields,
    )


def match_signal(
    detector: str, *, bank: str = "bank-a", label: str = "csam", severity: str = "critical",
    content_id: str = "i-1",
) -> SignalData:
    """An exact-hash bank match (distance 0) with the evidence `ExactHashDetector` gives."""
    return signal(
        detector, "match", content_id=content_id, distance=0, threshold=0.0,
        evidence={"bank": bank, "label": label, "severity": severity, "banks": [bank]},
    )


def sample_data(spec: TopicSpec) -> Data:
    """A fully populated, valid `data` model for any topic (outputs and inputs alike)."""
    reasons = [Reason(detector="sha256", signal="bank_match", distance=0, bank="b", label="csam")]
    target = Target(type="image", id="i-1", post_id="p-1", thread_id="t-1", author_id="u-1")
    samples: dict[str, Data] = {
        POSTS.name: PostData(post_id="p-1", thread_id="t-1", author=_account(), body="hi",
                             image_ids=["i-1"], created_at=T0),
        IMAGES.name: ImageData(image_id="i-1", author=_account(), post_id="p-1",
                               data_b64=b"\x89PNG\r\n\x1a\n"),
        REPORTS.name: ReportData(report_id="r-1", target_type="image", target_id="i-1",
                                 reporter=_account(), created_at=T0),
        REVIEWS.name: ReviewData(decision_id="dec-1", outcome="restore", content_id="i-1"),
        SIGNALS.name: SignalData(detector="sha256", detector_version="sha256-1",
                                 content_type="image", content_id="i-1", status="match",
                                 post_id="p-1", distance=0, threshold=0.0,
                                 evidence={"bank": "b", "label": "csam", "banks": ["b"]}),
        VERDICTS.name: VerdictData(content_type="image", content_id="i-1", verdict="block",
                                   decision_id="dec-1", post_id="p-1", thread_id="t-1",
                                   reasons=reasons, policy_version="builtin-1",
                                   latency_ms=12.5),
        TAKEDOWNS.name: TakedownData(decision_id="dec-1", action="block", target=target,
                                     reasons=reasons, severity="critical",
                                     policy_version="builtin-1", decided_at=T0),
        ALERTS.name: AlertData(alert_id="alr-1", kind="hash_match", severity="critical",
                               summary="Known image blocked", target=target,
                               evidence={"banks": ["b"]}, first_seen=T0, last_seen=T0,
                               count=2, dedup_key="hash_match:image:i-1",
                               runbook_url="docs/runbook.md#hash_match"),
        DEADLETTER.name: DeadLetterData(topic="forum.posts.v1", partition=3, offset=42,
                                        reason="not valid JSON", original=b"\xff{oops",
                                        key=b"t-1"),
    }
    return samples[spec.name]


def _account() -> Account:
    return Account(id="u-1", created_at=T0)


def png_bytes(color: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (16, 12)) -> bytes:
    """A small real PNG made with Pillow (tests generate images instead of shipping files)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()
